"""The ``kutta`` command-line tool (typer + rich)."""
