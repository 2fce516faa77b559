"""Sphinx extension: ``.. lash-openapi::`` renders the API reference of ``lash serve`` from its
OpenAPI document (``lash.serve.openapi()``, what ``/openapi.json`` serves): one table of every
operation, then its error codes, so the page never drifts from the API."""

from __future__ import annotations

from typing import Any

from docutils import nodes
from lash_hooks import parse_rst
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective


def _cell(text: str) -> str:
    return text.replace("\n", " ").strip() or "\\ "


def _body(operation: dict[str, Any]) -> str:
    body = operation.get("requestBody")
    if not body:
        return ""
    schema = body["content"]["application/json"]["schema"]
    required = set(schema.get("required", ()))
    fields = [f"``{k}``" + ("" if k in required else "?") for k in schema["properties"]]
    return ", ".join(fields)


def _responses(operation: dict[str, Any]) -> str:
    return ", ".join(sorted(operation["responses"]))


class OpenApiDirective(SphinxDirective):
    has_content = False

    def run(self) -> list[nodes.Node]:
        from lash.serve import openapi

        document = openapi()
        rows = []
        for path, item in document["paths"].items():
            for method, operation in item.items():
                if method == "parameters":
                    continue
                query = [
                    f"``{p['name']}``"
                    for p in operation.get("parameters", ())
                    if p.get("in") == "query"
                ]
                what = operation["summary"]
                if query:
                    what += " (query: " + ", ".join(query) + ")"
                rows.append(
                    (
                        f"``{method.upper()} {path}``",
                        _cell(what),
                        _cell(_body(operation)),
                        _cell(_responses(operation)),
                    )
                )
        lines = [
            ".. list-table::",
            "   :header-rows: 1",
            "   :widths: 30 40 15 15",
            "",
            "   * - Operation",
            "     - What",
            "     - JSON body",
            "     - Statuses",
        ]
        for row in rows:
            lines.append(f"   * - {row[0]}")
            lines.extend(f"     - {cell}" for cell in row[1:])
        codes = document["components"]["schemas"]["Error"]["properties"]["error"]["properties"]
        lines += ["", "Error codes: " + ", ".join(f"``{c}``" for c in codes["code"]["enum"]) + "."]
        return parse_rst(self, "\n".join(lines))


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive("lash-openapi", OpenApiDirective)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
