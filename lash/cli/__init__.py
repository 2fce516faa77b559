"""The ``lash`` command line. Plugins add subcommands through ``register_commands``."""

from __future__ import annotations

from lash.cli._main import cli, main

__all__ = ["cli", "main"]
