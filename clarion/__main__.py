"""`python -m clarion` is the `clarion` command."""

from clarion.cli.app import main

main()
