"""Sphinx extension: ``.. lash-cli-help:: [command]`` renders the ``lash`` CLI's own help text.

Rendered from the click commands at build time, so the CLI page never drifts from the CLI. The root
group shows its usage and options only: listing its commands would load the plugins of whatever
config the build runs next to.
"""

from __future__ import annotations

from typing import Any

import click
from docutils import nodes
from sphinx.application import Sphinx
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

logger = logging.getLogger(__name__)

#: Fixed width, so the output does not depend on the terminal the docs are built in.
WIDTH = 88


class CliHelpDirective(SphinxDirective):
    """``.. lash-cli-help:: plugins``: the help of ``lash plugins`` as a literal block;
    ``.. lash-cli-help:: sessions watch``: the help of a subcommand of a group."""

    optional_arguments = 2
    has_content = False

    def run(self) -> list[nodes.Node]:
        from lash.cli import cli

        root = click.Context(cli, info_name="lash", terminal_width=WIDTH, max_content_width=WIDTH)
        if self.arguments:
            name = self.arguments[0]
            # The builtin command table, not `cli.get_command()`: only lash's own commands, no
            # plugin loading.
            from lash.cli._context import builtin_command

            command = builtin_command(name)
            if command is None:
                logger.warning(f"lash has no command {name!r}", location=self.get_location())
                return []
            ctx = click.Context(
                command, info_name=name, parent=root, terminal_width=WIDTH, max_content_width=WIDTH
            )
            for sub in self.arguments[1:]:
                found = command.get_command(ctx, sub) if isinstance(command, click.Group) else None
                if found is None:
                    logger.warning(
                        f"lash {name} has no command {sub!r}", location=self.get_location()
                    )
                    return []
                command, name = found, sub
                ctx = click.Context(
                    command,
                    info_name=sub,
                    parent=ctx,
                    terminal_width=WIDTH,
                    max_content_width=WIDTH,
                )
            text = command.get_help(ctx)
        else:
            formatter = root.make_formatter()
            cli.format_usage(root, formatter)
            cli.format_help_text(root, formatter)
            click.Command.format_options(cli, root, formatter)
            text = formatter.getvalue().rstrip("\n")
        block = nodes.literal_block(text, text)
        block["language"] = "text"
        return [block]


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive("lash-cli-help", CliHelpDirective)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
