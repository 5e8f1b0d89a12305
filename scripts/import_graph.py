"""Print the package's import graph as the Mermaid edges docs/architecture.md draws.

    python scripts/import_graph.py packages   # one box per layer (and per top-level module)
    python scripts/import_graph.py modules    # one box per module

Arrows to ``core.errors`` and ``core.settings`` (which every layer imports) are left out of the
module graph; tests/test_architecture.py holds the document's diagrams equal to this output.
"""

from __future__ import annotations

import sys

import grimp

ROOT = "modelserve"
OMITTED = frozenset({f"{ROOT}.core.errors", f"{ROOT}.core.settings"})


def _node(module: str) -> str:
    return module.removeprefix(f"{ROOT}.").replace(".", "_")


def _unit(module: str) -> str:
    """A module's layer (its top-level package), or the module itself at the top level."""
    parts = module.split(".")
    return ".".join(parts[:2])


def edges(level: str) -> list[tuple[str, str]]:
    """``(importer, imported)`` node names of every direct import at ``level``."""
    graph = grimp.build_graph(ROOT)
    found: set[tuple[str, str]] = set()
    for module in graph.modules:
        for imported in graph.find_modules_directly_imported_by(module):
            if ROOT in (module, imported):
                continue
            if level == "packages":
                pair = (_unit(module), _unit(imported))
                if pair[0] != pair[1]:
                    found.add((_node(pair[0]), _node(pair[1])))
            elif imported not in OMITTED and module not in OMITTED:
                found.add((_node(module), _node(imported)))
    return sorted(found)


def main() -> None:
    level = sys.argv[1] if len(sys.argv) > 1 else "packages"
    for importer, imported in edges(level):
        print(f"    {importer} --> {imported}")  # noqa: T201 - a script's output


if __name__ == "__main__":
    main()
