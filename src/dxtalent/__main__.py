from dxtalent.cli import app

app()
