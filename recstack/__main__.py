"""`python -m recstack` runs the CLI."""

from recstack.cli import app

app()
