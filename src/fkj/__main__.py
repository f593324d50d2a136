from fkj.cli.main import app

app()
