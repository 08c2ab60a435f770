"""`python -m clarion` is the `clarion` command."""

from clarion.cli import main

main()
