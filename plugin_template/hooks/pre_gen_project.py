"""Refuse invalid inputs before anything is generated (cookiecutter's pre-generation hook).

cookiecutter renders this file with the inputs, runs it, and generates nothing when it exits
non-zero. Each input is rendered as a JSON string inside a raw ``'...'`` literal: Jinja's
``tojson`` escapes every ``'``, so any value keeps this file valid Python and arrives intact.
"""

from __future__ import annotations

import importlib.metadata
import json
import keyword
import re
import sys

# The quotes must stay single: once rendered, each value is JSON text, full of double quotes.
# fmt: off
INPUTS: dict[str, str] = {
    "name": r'{{ cookiecutter.name | tojson }}',
    "package_name": r'{{ cookiecutter.package_name | tojson }}',
    "project_slug": r'{{ cookiecutter.project_slug | tojson }}',
    "author": r'{{ cookiecutter.author | tojson }}',
    "description": r'{{ cookiecutter.description | tojson }}',
}
# fmt: on

PLUGIN_NAME = re.compile(r"[a-z][a-z0-9_]*")
# PEP 508 distribution names (any case); PEP 503 normalizes runs of "-", "_", "." to one "-".
DISTRIBUTION_NAME = re.compile(r"[a-z0-9]([a-z0-9._-]*[a-z0-9])?", re.IGNORECASE)
# Packages a plugin must not shadow: importing it would replace lash itself.
RESERVED_PACKAGES = frozenset({"lash", "lash_plugins_builtin", "lash_plugin_template"})
#: lash's distribution name on the package index.
LASH_DISTRIBUTION = "lash-sdk"


def builtin_plugins() -> frozenset[str]:
    """Plugin names the installed lash distribution itself declares (they are taken)."""
    try:
        entry_points = importlib.metadata.distribution(LASH_DISTRIBUTION).entry_points
    except importlib.metadata.PackageNotFoundError:  # cookiecutter run without lash installed
        return frozenset()
    return frozenset(ep.name for ep in entry_points if ep.group == "lash.plugins")


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a plugin name, or ``None``."""
    allowed = (
        "use lowercase letters, digits and underscores, starting with a letter "
        "(like hello or my_tool)"
    )
    if not PLUGIN_NAME.fullmatch(name):
        return allowed
    if name == "lash":
        return f"'lash' is reserved; {allowed}"
    if name in builtin_plugins():
        return "a builtin lash plugin already has this name; choose another one"
    return None


def package_problem(package: str) -> str | None:
    """Why ``package`` cannot be the plugin's import name, or ``None``."""
    if not (package.isascii() and package.isidentifier() and package == package.lower()):
        return (
            "use a PEP 8 module name: lowercase letters, digits and underscores, "
            "not starting with a digit (like lash_hello)"
        )
    if keyword.iskeyword(package):
        return "that is a Python keyword; use a module name like lash_hello"
    if package in RESERVED_PACKAGES:
        return "that is one of lash's own packages; use a module name like lash_hello"
    if package in sys.stdlib_module_names:
        return "that is a standard-library module; use a module name like lash_hello"
    return None


def slug_problem(slug: str) -> str | None:
    """Why ``slug`` cannot be the distribution name, or ``None``."""
    if not DISTRIBUTION_NAME.fullmatch(slug):
        return (
            "use a PEP 508 distribution name: letters, digits, '-', '_' and '.', "
            "starting and ending with a letter or digit (like lash-hello)"
        )
    normalized = re.sub(r"[-_.]+", "-", slug).lower()
    if normalized == LASH_DISTRIBUTION:
        return "that is lash's own distribution name (PEP 503 normalized); use one like lash-hello"
    if normalized == "lash":
        # Taken on the package index by a project unrelated to lash: `pip install` would fetch it.
        return (
            "that name belongs to an unrelated project on the package index (lash itself is "
            "lash-sdk); use one like lash-hello"
        )
    return None


def text_problem(text: str) -> str | None:
    """Why ``text`` cannot go into pyproject.toml and Python strings as it is, or ``None``."""
    if any(ch in text for ch in '"\\') or not text.isprintable():
        return "use one line of text without double quotes, backslashes or control characters"
    return None


CHECKS = {
    "name": name_problem,
    "package_name": package_problem,
    "project_slug": slug_problem,
    "author": text_problem,
    "description": text_problem,
}


def first_problem(inputs: dict[str, str]) -> str | None:
    """One message for the first invalid input (its key, its value, what is allowed), or None."""
    # Only the first: later inputs default to values derived from earlier ones, so an invalid
    # name would be reported three times otherwise.
    for key, check in CHECKS.items():
        reason = check(inputs[key])
        if reason is not None:
            return f"invalid {key}={inputs[key]!r}: {reason}"
    return None


def main() -> int:
    """Check the rendered inputs; print the problem on stderr and return 1, or return 0."""
    problem = first_problem({key: json.loads(value) for key, value in INPUTS.items()})
    if problem is None:
        return 0
    print(f"Error: {problem}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
