"""Sphinx extension: the API reference of a public face (``lash.__all__``, ``lash.store``...),
generated with autodoc.

``.. lash-api:: [module]`` documents every name of the module's ``__all__`` (default ``lash``)
exactly once, as ``<module>.<name>``, grouped by the private module that defines it (titles
below; a module not listed gets a title derived from its name). Each group is a section labelled
``api-<module>`` and opens with the first paragraph of that module's docstring. A name added to
``__all__`` is documented without any change here. ``:exclude:`` lists names documented on
another page (re-exports).
"""

from __future__ import annotations

import ast
import enum
import inspect
import re
import sys
import types
import typing
from pathlib import Path
from typing import Any

import attrs
from docutils import nodes
from lash_hooks import parse_rst
from sphinx.application import Sphinx
from sphinx.pycode import ModuleAnalyzer
from sphinx.util.docutils import SphinxDirective

import lash

#: Group titles by defining module, in page order. Modules not listed follow, alphabetically.
TITLES: dict[str, str] = {
    "lash._kernel.core": "The core",
    "lash._plugins.hostconfig": "Host configuration",
    "lash._kernel.session": "Sessions",
    "lash._kernel.turn": "Turns",
    "lash._contract.events": "Turn events",
    "lash._kernel.observation": "Observation",
    "lash._kernel.approvals": "Tool approval",
    "lash._kernel.event_json": "The JSON form of events",
    "lash._plugins.markers": "Hook markers",
    "lash._plugins.loading": "Plugins",
    "lash._plugins.options": "Plugin options",
    "lash._contract.services": "Session services",
    "lash._kernel.plugin_ops": "Plugin operations (hosts)",
    "lash._contract.operations": "Plugin operations (plugins)",
    "lash._contract.types": "Plugin declaration, tool calls and registrars",
    "lash._contract.turn_types": "Hook data and directives",
    "lash._contract.graph": "The session graph",
    "lash._contract.providers": "Model providers",
    "lash._contract.modeloptions": "Model options",
    "lash._store.protocol": "The store protocol",
    "lash._store.records": "Store records",
    "lash._store.leases": "Lease rules",
    "lash._store.memory": "The memory store",
    "lash._store.ids": "Session ids",
    "lash.errors": "Errors",
}


def defined_names(module: types.ModuleType) -> set[str]:
    """Names a module defines at top level (classes, functions, assignments), not imports."""
    try:
        source = inspect.getsource(module)
    except (OSError, TypeError):
        return set()
    names: set[str] = set()
    for node in ast.parse(source).body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif type(node).__name__ == "TypeAlias":  # `type X = ...` (Python >= 3.12)
            names.add(node.name.id)  # type: ignore[attr-defined]
    return names


def home_modules(public: types.ModuleType) -> dict[str, str]:
    """The private module defining each name of ``public.__all__`` (names not found are left
    out)."""
    homes: dict[str, str] = {}
    for name in public.__all__:
        getattr(public, name)  # `lash` imports lazily: load every defining module first
    modules = sorted(
        name
        for name, module in sys.modules.items()
        if module is not None and (name.startswith("lash._") or name == "lash.errors")
    )
    for modname in modules:
        for name in defined_names(sys.modules[modname]) & set(public.__all__):
            homes.setdefault(name, modname)
    return homes


def first_paragraph(module: types.ModuleType) -> str:
    doc = inspect.cleandoc(module.__doc__ or "")
    return doc.split("\n\n", 1)[0].strip()


def title_of(modname: str) -> str:
    return TITLES.get(modname) or modname.rsplit(".", 1)[-1].strip("_").replace("_", " ").title()


def data_doc(modname: str | None, name: str) -> str:
    """The ``#:`` comment above ``name`` in its module, if any."""
    if modname is None:
        return ""
    docs = ModuleAnalyzer.for_module(modname).find_attr_docs()
    return "\n".join(docs.get(("", name), [])).strip()


def public_path(cls: type) -> str:
    """``package.Name`` when the top-level package exports the class, else its full path."""
    package = cls.__module__.split(".", 1)[0]
    if getattr(sys.modules.get(package), cls.__qualname__, None) is cls:
        return f"{package}.{cls.__qualname__}"
    return f"{cls.__module__}.{cls.__qualname__}"


def show_factory_defaults(
    app: Sphinx,
    what: str,
    name: str,
    obj: Any,
    options: Any,
    signature: str | None,
    return_annotation: str | None,
) -> tuple[str | None, str | None] | None:
    """Show an attrs field's factory default as its value (``{}``) instead of ``NOTHING``."""
    if what != "class" or signature is None or not attrs.has(obj):
        return None
    for field in attrs.fields(obj):
        default = field.default
        if not isinstance(default, attrs.Factory) or default.takes_self:  # type: ignore[arg-type]
            continue
        try:
            shown = repr(default.factory())
        except Exception:  # a factory that needs its context: show nothing specific
            shown = "..."
        if len(shown) > 30:
            shown = "..."
        name = re.escape(field.alias or field.name)
        # "name: Type = NOTHING": the annotation runs to the first "=", which is this default.
        pattern = re.compile(rf"(?<=[(\s,*])({name}(?::[^=]+?)?\s*=\s*)NOTHING\b")
        signature = pattern.sub(lambda m, shown=shown: m.group(1) + shown, signature)
    return signature, return_annotation


def _is_protocol(obj: type) -> bool:
    return bool(getattr(obj, "_is_protocol", False))


def describe(name: str, modname: str | None, public: types.ModuleType = lash) -> str:
    """The reST documenting ``<public>.<name>``."""
    obj = getattr(public, name)
    target = f"{public.__name__}.{name}"
    if inspect.isclass(obj):
        options = []
        if issubclass(obj, BaseException):
            options = [":members:", ":show-inheritance:"]
        elif _is_protocol(obj):
            options = [":members:", ":undoc-members:"]
            if "__call__" in vars(obj):
                options.append(":special-members: __call__")
        elif issubclass(obj, enum.Enum):
            options = [":members:", ":undoc-members:"]
        elif issubclass(obj, tuple):
            options = []  # a NamedTuple: the signature lists the fields
        else:
            options = [":members:"]
        return "\n".join([f".. autoclass:: {target}", *(f"   {o}" for o in options)]) + "\n"
    if inspect.isfunction(obj):
        return f".. autofunction:: {target}\n"
    lines = [f".. py:data:: {name}"]
    args = typing.get_args(obj)
    if isinstance(obj, types.UnionType) or typing.get_origin(obj) is typing.Union:
        lines.append("   :value: " + " | ".join(getattr(a, "__name__", repr(a)) for a in args))
    else:
        lines.append(f"   :type: {public_path(type(obj))}")
    doc = data_doc(modname, name)
    if doc:
        lines += ["", *(f"   {line}" if line else "" for line in doc.splitlines())]
    return "\n".join(lines) + "\n"


class ApiDirective(SphinxDirective):
    """``.. lash-api:: [module]``: every name of its ``__all__``, grouped by defining module."""

    has_content = False
    optional_arguments = 1
    option_spec = {"exclude": lambda text: text.split()}  # noqa: RUF012 - docutils' own API

    def run(self) -> list[nodes.Node]:
        import importlib

        public = importlib.import_module(self.arguments[0] if self.arguments else "lash")
        excluded = set(self.options.get("exclude", ()))
        homes = home_modules(public)
        groups: dict[str | None, list[str]] = {}
        for name in public.__all__:
            if name not in excluded:
                groups.setdefault(homes.get(name), []).append(name)
        for modname in groups:
            if modname is not None:
                self.env.note_dependency(str(Path(inspect.getfile(sys.modules[modname]))))
        order = [m for m in TITLES if m in groups]
        order += sorted(m for m in groups if m is not None and m not in TITLES)
        parts = [f".. py:currentmodule:: {public.__name__}\n"]
        prefix = "api-" if public is lash else f"api-{public.__name__.split('.', 1)[1]}-"
        for modname in [*order, *([None] if None in groups else [])]:
            title = title_of(modname) if modname is not None else "Other"
            label = prefix + (modname or "lash.other").split(".", 1)[1].strip("_")
            parts.append(f".. _{label}:\n\n{title}\n{'-' * len(title)}\n")
            if modname is not None and (intro := first_paragraph(sys.modules[modname])):
                parts.append(intro + "\n")
            parts += [describe(name, modname, public) for name in groups[modname]]
        return parse_rst(self, "\n".join(parts), titles=True)


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive("lash-api", ApiDirective)
    app.connect("autodoc-process-signature", show_factory_defaults)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
