"""Sphinx extension: the hook reference, generated from :mod:`lash.hookspecs`.

Three directives:

``.. lash-hook-summary::``
    a table per lifecycle area, a row per hook: dispatch shape, async or not, failure rule.
``.. lash-hooks::``
    one section per hook, labelled ``hook-<name>``, grouped by lifecycle area (labelled
    ``hook-area-<slug>``): signature, shape (from ``SHAPES``), async (from ``ASYNC_ALLOWED``), the
    docstring, and every example implementation found in ``docs/examples/*.py``.
``.. lash-hooks-of-shape:: <shape>``
    a sentence linking every hook of one dispatch shape.

Areas come from the banner comments of ``lash/hookspecs.py``, so a hook added under a banner needs
no change here. The build warns (an error under ``-W``) when the contract disagrees with itself: a
hookspec missing from ``SHAPES``, a docstring whose **Shape:** or **Async:** contradicts the tables,
a docstring without **On error:**, or an example implementing a hook that does not exist.
"""

from __future__ import annotations

import ast
import inspect
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
from docutils import nodes
from sphinx.application import Sphinx
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

import lash
from lash import hookspecs

logger = logging.getLogger(__name__)

SHAPE_NAMES = ("collect", "chain", "first", "exclusive", "broadcast")

# A banner in hookspecs.py: a line of "=", the area title, a line of "=".
_RULE = re.compile(r"^# ={10,}\s*$")
_BANNER = re.compile(r"^# (?P<title>[^:(]+?)\s*(?:\((?P<paren>.*)\)|:\s*(?P<rest>.*))?\s*$")
# "**On error:** text" up to the end of its paragraph.
_ON_ERROR = re.compile(r"\*\*On error:\*\*\s*(?P<text>.+?)(?:\n\s*\n|\Z)", re.S)
_SHAPE = re.compile(r"\*\*Shape:\*\*\s*(?P<word>\w+)")
_ASYNC = re.compile(r"\*\*Async:\*\*\s*(?P<word>\w+)")
_NAME = re.compile(r"(?<![\w.])([A-Za-z_]\w*)")


@attrs.frozen
class Area:
    """A lifecycle area of the contract: a banner of hookspecs.py and the hooks below it."""

    title: str
    description: str
    hooks: tuple[str, ...]

    @property
    def label(self) -> str:
        return "hook-area-" + re.sub(r"[^a-z0-9]+", "-", self.title.lower()).strip("-")


@attrs.frozen
class Example:
    """A hook implementation in docs/examples: the file (relative to the docs) and its object."""

    path: str
    pyobject: str


def hook_functions() -> dict[str, Callable[..., Any]]:
    """Every hookspec of lash.hookspecs, in source order."""
    found = {
        name: fn
        for name, fn in vars(hookspecs).items()
        if callable(fn)
        and hasattr(fn, "lash_spec")
        and not name.startswith("_")
        and name not in hookspecs.DEPRECATED  # old names of renamed hooks: listed apart
    }
    return dict(sorted(found.items(), key=lambda item: item[1].__code__.co_firstlineno))


def areas(functions: dict[str, Callable[..., Any]]) -> list[Area]:
    """Group hooks by the banner comment above them (hooks above every banner: "Hooks")."""
    lines = inspect.getsource(hookspecs).splitlines()
    banners: list[tuple[int, str, str]] = [(0, "Hooks", "")]
    for i in range(1, len(lines) - 1):
        if _RULE.match(lines[i - 1]) and _RULE.match(lines[i + 1]):
            match = _BANNER.match(lines[i])
            if match:
                extra = match.group("paren") or match.group("rest") or ""
                banners.append((i + 1, match.group("title").strip(), extra.strip()))
    grouped: dict[int, list[str]] = {}
    for name, fn in functions.items():
        line = fn.__code__.co_firstlineno
        index = max(i for i, (start, _, _) in enumerate(banners) if start <= line)
        grouped.setdefault(index, []).append(name)
    return [
        Area(title, description, tuple(grouped[i]))
        for i, (_, title, description) in enumerate(banners)
        if i in grouped
    ]


def docstring(fn: Callable[..., Any]) -> str:
    return inspect.cleandoc(fn.__doc__ or "")


def on_error(name: str, doc: str) -> str:
    """The failure rule: the docstring's **On error:** paragraph, else the module-wide default."""
    match = _ON_ERROR.search(doc)
    if match:
        return " ".join(match.group("text").split())
    if hookspecs.SHAPES.get(name) == "broadcast":
        return "reported and isolated."
    return "wrapped in :class:`lash.PluginError` naming the plugin and the hook."


def signature(fn: Callable[..., Any]) -> str:
    """``name(arg: Type, ...) -> Return`` with lash's names qualified so they link to the API."""
    public = set(lash.__all__)

    def qualify(annotation: Any) -> str:
        text = annotation if isinstance(annotation, str) else inspect.formatannotation(annotation)
        return _NAME.sub(lambda m: f"lash.{m[1]}" if m[1] in public else m[1], text)

    sig = inspect.signature(fn)
    params = []
    for param in sig.parameters.values():
        if param.annotation is inspect.Parameter.empty:
            params.append(param.name)
        else:
            params.append(f"{param.name}: {qualify(param.annotation)}")
    text = f"{fn.__name__}({', '.join(params)})"
    if sig.return_annotation is not inspect.Signature.empty:
        text += f" -> {qualify(sig.return_annotation)}"
    return text


def find_examples(examples_dir: Path, srcdir: Path) -> tuple[dict[str, list[Example]], list[str]]:
    """Hook implementations (``@lash.hookimpl`` functions and methods) in the example files.

    Returns the examples by hook name and every example file read (for dependency tracking).
    """
    found: dict[str, list[Example]] = {}
    files: list[str] = []
    for path in sorted(examples_dir.glob("*.py")):
        files.append(str(path))
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        rel = "/" + path.relative_to(srcdir).as_posix()
        for node in tree.body:
            candidates: list[tuple[str, ast.AST]] = []
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                candidates.append((node.name, node))
            elif isinstance(node, ast.ClassDef):
                candidates += [
                    (f"{node.name}.{item.name}", item)
                    for item in node.body
                    if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef))
                ]
            for pyobject, fn in candidates:
                assert isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef))
                if any("hookimpl" in ast.unparse(d) for d in fn.decorator_list):
                    found.setdefault(fn.name, []).append(Example(rel, pyobject))
    return found, files


def parse_rst(directive: SphinxDirective, text: str, *, titles: bool = False) -> list[nodes.Node]:
    """Parse generated reST into nodes (section titles allowed with ``titles``)."""
    if hasattr(directive, "parse_text_to_nodes"):  # Sphinx >= 7.4
        return directive.parse_text_to_nodes(text, allow_section_headings=titles)
    from docutils.statemachine import StringList
    from sphinx.util.nodes import nested_parse_with_titles

    node = nodes.Element()
    node.document = directive.state.document
    content = StringList(text.splitlines(), source=directive.get_location())
    if titles:
        nested_parse_with_titles(directive.state, content, node)
    else:
        directive.state.nested_parse(content, 0, node)
    return node.children


def _indent(text: str, prefix: str = "   ") -> str:
    return "\n".join(prefix + line if line.strip() else "" for line in text.splitlines())


class _HookDirective(SphinxDirective):
    has_content = False

    def warn(self, message: str) -> None:
        logger.warning(message, location=self.get_location())

    def check_contract(self, functions: dict[str, Callable[..., Any]]) -> None:
        """Warn where the hookspecs, SHAPES, ASYNC_ALLOWED and __all__ disagree."""
        source = f"{Path(inspect.getfile(hookspecs)).name}"
        names = set(functions)
        for name in sorted(names - set(hookspecs.SHAPES)):
            self.warn(f"{source}: hook {name!r} has no dispatch shape in SHAPES")
        for name in sorted(set(hookspecs.SHAPES) - names):
            self.warn(f"{source}: SHAPES names {name!r}, which is not a hookspec")
        for name in sorted(set(hookspecs.ASYNC_ALLOWED) - names):
            self.warn(f"{source}: ASYNC_ALLOWED names {name!r}, which is not a hookspec")
        for name in sorted(names.symmetric_difference(getattr(hookspecs, "__all__", names))):
            self.warn(f"{source}: __all__ and the hookspecs disagree about {name!r}")
        for name, fn in functions.items():
            where = f"{source}:{fn.__code__.co_firstlineno}: {name}"
            doc = docstring(fn)
            shape = hookspecs.SHAPES.get(name)
            if shape is not None and shape not in SHAPE_NAMES:
                self.warn(f"{where}: unknown dispatch shape {shape!r} in SHAPES")
            match = _SHAPE.search(doc)
            if match is None:
                self.warn(f"{where}: the docstring does not state its **Shape:**")
            elif shape is not None and match.group("word") != shape:
                self.warn(
                    f"{where}: the docstring says **Shape:** {match.group('word')}, "
                    f"SHAPES says {shape}"
                )
            match = _ASYNC.search(doc)
            may_be_async = name in hookspecs.ASYNC_ALLOWED
            if match is None:
                self.warn(f"{where}: the docstring does not state **Async:**")
            elif (match.group("word") == "no") == may_be_async:
                self.warn(
                    f"{where}: the docstring says **Async:** {match.group('word')}, but the hook "
                    f"is {'' if may_be_async else 'not '}in ASYNC_ALLOWED"
                )
            if _ON_ERROR.search(doc) is None:
                self.warn(f"{where}: the docstring does not state its failure rule (**On error:**)")


def _async_text(name: str) -> str:
    if name in hookspecs.ASYNC_ALLOWED:
        return "may be async (``async def`` implementations are awaited by the kernel)"
    return "no: implementations must be plain ``def`` (they run while the core is built)"


class HookSummaryDirective(_HookDirective):
    """``.. lash-hook-summary::``: a table per lifecycle area, one row per hook."""

    def run(self) -> list[nodes.Node]:
        self.env.note_dependency(inspect.getfile(hookspecs))
        functions = hook_functions()
        tables = []
        # One table per area, titled by it: an area column would take the width the failure
        # rule, the longest cell, needs to stay readable.
        for area in areas(functions):
            rows = []
            for name in area.hooks:
                shape = hookspecs.SHAPES.get(name, "?")
                rows.append(
                    f"   * - :ref:`{name} <hook-{name}>`\n"
                    f"     - :ref:`{shape} <shape-{shape}>`\n"
                    f"     - {'yes' if name in hookspecs.ASYNC_ALLOWED else 'no'}\n"
                    f"     - {on_error(name, docstring(functions[name]))}"
                )
            tables.append(
                f".. list-table:: :ref:`{area.title} <{area.label}>`\n"
                "   :header-rows: 1\n"
                "   :widths: 30 14 10 46\n"
                "   :class: hook-summary\n\n"
                "   * - Hook\n     - Shape\n     - Async\n     - On error\n" + "\n".join(rows)
            )
        return parse_rst(self, "\n\n".join(tables))


class HooksDirective(_HookDirective):
    """``.. lash-hooks::``: one section per hook, grouped by lifecycle area."""

    def run(self) -> list[nodes.Node]:
        self.env.note_dependency(inspect.getfile(hookspecs))
        functions = hook_functions()
        self.check_contract(functions)
        srcdir = Path(self.env.srcdir)
        examples, files = find_examples(srcdir / "examples", srcdir)
        for path in files:
            self.env.note_dependency(path)
        # Old names of renamed hooks still run (docs/hooks.rst shows them next to the new ones).
        for name in sorted(set(examples) - set(functions) - set(hookspecs.DEPRECATED)):
            for example in examples[name]:
                self.warn(
                    f"{example.path}: {example.pyobject} is a @lash.hookimpl but {name!r} is "
                    "not a lash hook"
                )
        parts: list[str] = []
        for area in areas(functions):
            parts.append(f".. _{area.label}:\n\n{area.title}\n{'=' * len(area.title)}\n")
            if area.description:
                parts.append(area.description[0].upper() + area.description[1:] + ".\n")
            for name in area.hooks:
                parts.append(self.section(name, functions[name], area, examples.get(name, [])))
        return parse_rst(self, "\n".join(parts), titles=True)

    def section(
        self, name: str, fn: Callable[..., Any], area: Area, examples: list[Example]
    ) -> str:
        shape = hookspecs.SHAPES.get(name, "?")
        doc = docstring(fn)
        text = (
            f".. _hook-{name}:\n\n{name}\n{'-' * len(name)}\n\n"
            f":Area: :ref:`{area.title.lower()} <{area.label}>`\n"
            f":Shape: :ref:`{shape} <shape-{shape}>`\n"
            f":Async: {_async_text(name)}\n"
            f":On error: {on_error(name, doc)}\n\n"
            f".. py:function:: {signature(fn)}\n"
            f"   :module: lash.hookspecs\n\n"
            f"{_indent(doc)}\n\n"
        )
        for example in examples:
            text += (
                f".. literalinclude:: {example.path}\n"
                f"   :pyobject: {example.pyobject}\n"
                + ("   :dedent:\n" if "." in example.pyobject else "")  # a method: unindent
                + f"   :caption: Example: ``{example.pyobject}`` in ``docs{example.path}``\n\n"
            )
        return text


class HooksOfShapeDirective(_HookDirective):
    """``.. lash-hooks-of-shape:: collect``: a sentence linking every hook of one shape."""

    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        self.env.note_dependency(inspect.getfile(hookspecs))
        shape = self.arguments[0]
        if shape not in SHAPE_NAMES:
            self.warn(f"unknown dispatch shape {shape!r} (known: {', '.join(SHAPE_NAMES)})")
            return []
        names = [n for n in hook_functions() if hookspecs.SHAPES.get(n) == shape]
        links = ", ".join(f":ref:`{n} <hook-{n}>`" for n in names) or "none"
        return parse_rst(self, f"Hooks of this shape: {links}.")


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive("lash-hook-summary", HookSummaryDirective)
    app.add_directive("lash-hooks-of-shape", HooksOfShapeDirective)
    app.add_directive("lash-hooks", HooksDirective)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
