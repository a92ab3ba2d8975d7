"""The `logbroker` command line (click): one module per group of commands."""
