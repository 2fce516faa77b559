"""A plugin adding a ``lash hello`` subcommand to the command line."""

import click

import lash


@lash.hookimpl
def register_commands(cli: click.Group) -> None:
    @cli.command("hello")
    @click.argument("name", default="world")
    def hello(name: str) -> None:
        """Greet NAME."""
        click.echo(f"hello, {name}!")
