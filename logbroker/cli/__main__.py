"""`python -m logbroker.cli` runs the `logbroker` command."""

from logbroker.cli.main import main

main()
