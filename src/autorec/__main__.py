"""``python -m autorec`` runs the command line."""

from .cli.main import cli

cli()
