"""`python -m easel` is the `easel` command."""

from easel.cli.main import entry

entry()
