"""access policy: per-tenant policy epoch (invalidates cached decision contexts);
audit: fkj_audit_append() on PostgreSQL (a read's audit record in one round trip)

Revision ID: 0010
Revises: 0007
Create Date: 2026-11-22
"""
from alembic import op
import sqlalchemy as sa


revision = '0010'
down_revision = '0007'
branch_labels = None
depends_on = None


#: fkj_audit_append as this revision created it (0012 replaces it by a version that also
#: moves the audit journal's watermark); the text is frozen here so the migration stays as
#: it was
_APPEND_FUNCTION = r"""
CREATE OR REPLACE FUNCTION fkj_audit_append(p_tenant text, p_rows json, p_sync text)
RETURNS bigint LANGUAGE plpgsql AS $fn$
DECLARE
  v_seq bigint; v_hash text; v_prev text; r record;
BEGIN
  PERFORM set_config('fkj.tenant', p_tenant, true);
  PERFORM set_config('synchronous_commit', p_sync, true);
  SELECT last_seq, last_hash INTO v_seq, v_hash FROM audit_head
   WHERE tenant = p_tenant FOR UPDATE;
  IF NOT FOUND THEN
    INSERT INTO audit_head (tenant, last_seq, last_hash) VALUES (p_tenant, 0, repeat('0', 64))
      ON CONFLICT (tenant) DO NOTHING;
    SELECT last_seq, last_hash INTO v_seq, v_hash FROM audit_head
     WHERE tenant = p_tenant FOR UPDATE;
  END IF;
  FOR r IN SELECT * FROM json_to_recordset(p_rows) AS x(
      recorded bigint, patients text, agent text, action text, subtype text, purpose text,
      outcome text, content text, patient_list json)
  LOOP
    v_seq := v_seq + 1;
    v_prev := v_hash;
    v_hash := encode(sha256(convert_to(v_prev || chr(30) || r.content || chr(30)
                                       || v_seq::text || chr(30) || p_tenant, 'UTF8')), 'hex');
    INSERT INTO audit_log (tenant, seq, recorded, patients, agent, action, subtype, purpose,
                           outcome, content, prev_hash, hash)
    VALUES (p_tenant, v_seq, r.recorded, r.patients, r.agent, r.action, r.subtype, r.purpose,
            r.outcome, r.content, v_prev, v_hash);
    INSERT INTO audit_patient (tenant, patient, seq)
    SELECT DISTINCT p_tenant, value, v_seq FROM json_array_elements_text(r.patient_list);
  END LOOP;
  UPDATE audit_head SET last_seq = v_seq, last_hash = v_hash WHERE tenant = p_tenant;
  RETURN v_seq;
END
$fn$
"""


def upgrade() -> None:
    op.create_table('policy_epoch',
    sa.Column('tenant', sa.String(length=4), nullable=False),
    sa.Column('epoch', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('tenant')
    )
    if op.get_bind().dialect.name == "postgresql":
        from fkj.store import rls
        # a counter, no clinical data: not tenant-scoped, so any connection can read it
        rls.grant_plain(op.get_bind(), "policy_epoch", "SELECT, INSERT, UPDATE")
        op.execute(_APPEND_FUNCTION)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS fkj_audit_append(text, json, text)")
    op.drop_table('policy_epoch')
