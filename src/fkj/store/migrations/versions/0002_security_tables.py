"""security tables

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""
from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('auth_code',
    sa.Column('code_hash', sa.String(length=64), nullable=False),
    sa.Column('tenant', sa.String(length=4), nullable=False),
    sa.Column('client_id', sa.String(length=128), nullable=False),
    sa.Column('redirect_uri', sa.Text(), nullable=False),
    sa.Column('code_challenge', sa.String(length=128), nullable=False),
    sa.Column('scope', sa.Text(), nullable=False),
    sa.Column('grant', sa.Text(), nullable=False),
    sa.Column('created', sa.BigInteger(), nullable=False),
    sa.Column('expires', sa.BigInteger(), nullable=False),
    sa.Column('used', sa.BigInteger(), nullable=True),
    sa.Column('access_jti', sa.String(length=64), nullable=True),
    sa.Column('access_exp', sa.BigInteger(), nullable=True),
    sa.Column('family_id', sa.String(length=64), nullable=True),
    sa.PrimaryKeyConstraint('code_hash')
    )
    op.create_table('client_assertion_jti',
    sa.Column('client_id', sa.String(length=128), nullable=False),
    sa.Column('jti', sa.String(length=255), nullable=False),
    sa.Column('expires', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('client_id', 'jti')
    )
    op.create_table('launch_context',
    sa.Column('launch_id', sa.String(length=64), nullable=False),
    sa.Column('tenant', sa.String(length=4), nullable=False),
    sa.Column('patient', sa.String(length=64), nullable=True),
    sa.Column('encounter', sa.String(length=64), nullable=True),
    sa.Column('user_ref', sa.String(length=128), nullable=True),
    sa.Column('created', sa.BigInteger(), nullable=False),
    sa.Column('expires', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('launch_id')
    )
    op.create_table('oauth_client',
    sa.Column('client_id', sa.String(length=128), nullable=False),
    sa.Column('tenant', sa.String(length=4), nullable=True),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('client_type', sa.String(length=16), nullable=False),
    sa.Column('redirect_uris', sa.Text(), nullable=False),
    sa.Column('secret_hash', sa.Text(), nullable=True),
    sa.Column('jwks', sa.Text(), nullable=True),
    sa.Column('scopes', sa.Text(), nullable=False),
    sa.Column('created', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('client_id')
    )
    op.create_table('refresh_token',
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('family_id', sa.String(length=64), nullable=False),
    sa.Column('tenant', sa.String(length=4), nullable=False),
    sa.Column('client_id', sa.String(length=128), nullable=False),
    sa.Column('scope', sa.Text(), nullable=False),
    sa.Column('grant', sa.Text(), nullable=False),
    sa.Column('created', sa.BigInteger(), nullable=False),
    sa.Column('expires', sa.BigInteger(), nullable=False),
    sa.Column('used', sa.BigInteger(), nullable=True),
    sa.Column('revoked', sa.Boolean(), nullable=False),
    sa.Column('access_jti', sa.String(length=64), nullable=True),
    sa.Column('access_exp', sa.BigInteger(), nullable=True),
    sa.PrimaryKeyConstraint('token_hash')
    )
    with op.batch_alter_table('refresh_token', schema=None) as batch_op:
        batch_op.create_index('ix_refresh_token_family', ['family_id'], unique=False)

    op.create_table('revoked_token',
    sa.Column('jti', sa.String(length=64), nullable=False),
    sa.Column('tenant', sa.String(length=4), nullable=True),
    sa.Column('revoked', sa.BigInteger(), nullable=False),
    sa.Column('expires', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('jti')
    )
    with op.batch_alter_table('revoked_token', schema=None) as batch_op:
        batch_op.create_index('ix_revoked_token_expires', ['expires'], unique=False)

    op.create_table('signing_key',
    sa.Column('kid', sa.String(length=64), nullable=False),
    sa.Column('alg', sa.String(length=16), nullable=False),
    sa.Column('private_jwk', sa.Text(), nullable=False),
    sa.Column('created', sa.BigInteger(), nullable=False),
    sa.Column('retired', sa.BigInteger(), nullable=True),
    sa.Column('not_after', sa.BigInteger(), nullable=True),
    sa.PrimaryKeyConstraint('kid')
    )


    if op.get_bind().dialect.name == "postgresql":
        from fkj.store import rls
        # authorisation-server state: read by the token endpoint before a tenant is known,
        # so no tenant policy; the app role may read and write it
        for table in ("auth_code", "client_assertion_jti", "launch_context", "oauth_client",
                      "refresh_token", "revoked_token", "signing_key"):
            rls.grant_plain(op.get_bind(), table)


def downgrade() -> None:
    op.drop_table('signing_key')
    with op.batch_alter_table('revoked_token', schema=None) as batch_op:
        batch_op.drop_index('ix_revoked_token_expires')

    op.drop_table('revoked_token')
    with op.batch_alter_table('refresh_token', schema=None) as batch_op:
        batch_op.drop_index('ix_refresh_token_family')

    op.drop_table('refresh_token')
    op.drop_table('oauth_client')
    op.drop_table('launch_context')
    op.drop_table('client_assertion_jti')
    op.drop_table('auth_code')
