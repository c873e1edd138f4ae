"""A contract type import-linter lacks: "these modules never import that part of an
external package".

import-linter forbids external packages only as a whole (``aiohttp``, not
``aiohttp.web``), because its graph keeps one node per external package. The core
may use aiohttp's HTTP client (JWKS fetches) but never its web server, so this
contract reads the import lines the graph records for ``aiohttp`` and refuses the
ones that reach the forbidden submodule. Type-only imports count like any other.
"""

from __future__ import annotations

import re

from grimp import ImportGraph
from importlinter import Contract, ContractCheck, fields, output


class ForbiddenExternalSubmodules(Contract):
    """``source_modules`` (with their descendants) never import any of
    ``forbidden_submodules`` (dotted names inside an external package, e.g.
    ``aiohttp.web``), whether as ``import a.b``, ``from a.b import x`` or
    ``from a import b``."""

    type_name = "forbidden_external"

    source_modules = fields.ListField(subfield=fields.ModuleField())
    forbidden_submodules = fields.ListField(subfield=fields.StringField())

    def check(self, graph: ImportGraph, verbose: bool) -> ContractCheck:
        found: list[dict[str, object]] = []
        for source in self.source_modules:  # type: ignore[attr-defined]
            importers = {source.name} | graph.find_descendants(source.name)
            for importer in sorted(importers):
                for submodule in self.forbidden_submodules:  # type: ignore[attr-defined]
                    found.extend(_offending_lines(graph, importer, str(submodule)))
        return ContractCheck(kept=not found, metadata={"found": found})

    def render_broken_contract(self, check: ContractCheck) -> None:
        for item in check.metadata["found"]:
            output.print_error(
                f"{item['importer']}:{item['line_number']} imports {item['submodule']}: "
                f"{item['line_contents']}"
            )
            output.new_line()


def _offending_lines(graph: ImportGraph, importer: str, submodule: str) -> list[dict[str, object]]:
    package, _, rest = submodule.partition(".")
    if not rest or package not in graph.find_modules_directly_imported_by(importer):
        return []
    head, _, last = submodule.rpartition(".")
    pattern = re.compile(
        rf"^\s*(import\s+{re.escape(submodule)}\b"
        rf"|from\s+{re.escape(submodule)}(\.|\s)"
        rf"|from\s+{re.escape(head)}\s+import\s+.*\b{re.escape(last)}\b)"
    )
    return [
        {"importer": importer, "submodule": submodule, **detail}
        for detail in graph.get_import_details(importer=importer, imported=package)
        if pattern.match(detail["line_contents"])
    ]
