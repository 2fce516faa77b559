"""``lash new-plugin``: generate a plugin package from the cookiecutter template lash ships."""

from __future__ import annotations

import contextlib
import importlib.resources
import json
import logging
import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import click

#: The package the template is installed as (``plugin_template/`` of the source tree).
TEMPLATE_PACKAGE = "lash_plugin_template"


def template_dir() -> Path:
    """The directory of the plugin template (holding ``cookiecutter.json``), or a click error."""
    try:
        root: Any = importlib.resources.files(TEMPLATE_PACKAGE)
    except ModuleNotFoundError:
        # A source checkout installed before the template became a package: it sits beside lash/.
        root = Path(__file__).resolve().parents[2] / "plugin_template"
    # cookiecutter reads a directory; an installed package (wheel or editable) is one.
    if not isinstance(root, Path) or not (root / "cookiecutter.json").is_file():
        raise click.ClickException(
            f"the plugin template is missing from this installation of lash ({root}); "
            "reinstall lash-sdk"
        )
    return root


def template_inputs(template: Path) -> list[str]:
    """The inputs the template asks for, in prompt order (``cookiecutter.json`` keys)."""
    context = json.loads((template / "cookiecutter.json").read_text(encoding="utf-8"))
    return [key for key in context if not key.startswith("_")]


def parse_inputs(pairs: Sequence[str], known: Sequence[str]) -> dict[str, str]:
    """``KEY=VALUE`` arguments as a dict; an unknown key or no ``=`` is a usage error."""
    # Checked here: cookiecutter ignores keys its template lacks, so a typo (nmae=hello) would
    # quietly generate the default plugin.
    inputs: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="KEY=VALUE")
        if key not in known:
            raise click.BadParameter(
                f"unknown input {key!r}; the template's inputs are: {', '.join(known)}",
                param_hint="KEY=VALUE",
            )
        inputs[key] = value
    return inputs


@contextlib.contextmanager
def _quiet_cookiecutter() -> Iterator[None]:
    # cookiecutter logs a hook failure with its traceback; the hook already printed the reason.
    # Its loggers are children of "cookiecutter" with no level of their own, so this silences them.
    logger = logging.getLogger("cookiecutter")
    level = logger.level
    logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        logger.setLevel(level)


@click.command("new-plugin")
@click.option(
    "--no-input",
    is_flag=True,
    help="Do not prompt: use the KEY=VALUE inputs and the template's defaults for the rest.",
)
@click.option(
    "--output-dir",
    "-o",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help="Where to create the project directory.",
)
@click.argument("pairs", metavar="[KEY=VALUE]...", nargs=-1)
@click.pass_context
def new_plugin_command(
    ctx: click.Context, no_input: bool, output_dir: Path, pairs: tuple[str, ...]
) -> None:
    """Generate a plugin package (tool, options, state, hook, tests, CI) from lash's template.

    The template's inputs are name (the plugin's name, like hello), package_name (default
    lash_<name>), project_slug (the distribution name and directory, default lash-<name>),
    author and description. KEY=VALUE pairs set them; the others are prompted for, or take their
    defaults with --no-input:

        lash new-plugin --no-input name=weather

    Invalid inputs are refused and nothing is generated.
    """
    template = template_dir()
    inputs = parse_inputs(pairs, template_inputs(template))

    # Imported here: `lash --help` and the other commands never pay for cookiecutter.
    from cookiecutter.exceptions import (  # type: ignore[import-untyped]  # no type information
        CookiecutterException,
        FailedHookException,
        OutputDirExistsException,
    )
    from cookiecutter.main import cookiecutter  # type: ignore[import-untyped]  # same package

    try:
        with _quiet_cookiecutter():
            project = Path(
                cookiecutter(
                    str(template),
                    no_input=no_input,
                    extra_context=inputs,
                    output_dir=str(output_dir),
                )
            )
    except EOFError:
        # A prompt read the end of stdin (no terminal: /dev/null in CI, or too few lines piped);
        # click would only say "Aborted!". Nothing is written before the last answer.
        raise click.ClickException(
            "the answers on stdin ended before every input was answered (one line each: "
            f"{', '.join(template_inputs(template))}); nothing was generated. Without a "
            "terminal, pass --no-input and the inputs as KEY=VALUE"
        ) from None
    except FailedHookException:
        # The template's check printed which input is invalid and what is allowed; nothing was
        # generated.
        ctx.exit(1)
    except OutputDirExistsException as exc:
        # cookiecutter's message is 'Error: "<dir>" directory already exists'.
        found = re.search(r'"(.*)"', str(exc))
        where = os.path.relpath(found[1]) if found else "the project directory"
        raise click.ClickException(
            f"{where} already exists; nothing was generated. Remove it, or choose another "
            "project_slug=... or --output-dir"
        ) from None
    except CookiecutterException as exc:
        raise click.ClickException(f"the plugin template failed: {exc}") from None

    where = os.path.relpath(project)
    click.echo(f"Created {where}. Next:")
    click.echo(f"  cd {where}")
    click.echo("  pip install -e '.[test]'")
    click.echo("  pytest")
    click.echo("  lash plugins")


__all__ = ["new_plugin_command", "template_dir"]
