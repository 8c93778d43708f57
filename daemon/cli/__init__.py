"""The `wa-sender` command line (`main`): the parser and dispatch in `main.py`, one module per
command group."""

from daemon.cli.main import main

__all__ = ["main"]
