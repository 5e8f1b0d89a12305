"""docs/architecture.md draws the imports the code has: its two component diagrams are held
equal to the package's import graph (scripts/import_graph.py)."""

from __future__ import annotations

import re
import runpy
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCUMENT = ROOT / "docs" / "architecture.md"
GRAPH = runpy.run_path(str(ROOT / "scripts" / "import_graph.py"))


def _diagrams() -> list[set[tuple[str, str]]]:
    """The arrows of each ``flowchart`` of the Components section."""
    section = DOCUMENT.read_text().split("## Components", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```mermaid\nflowchart \w+\n(.*?)```", section, re.DOTALL)
    return [set(re.findall(r"^\s+(\w+) --> (\w+)$", block, re.MULTILINE)) for block in blocks]


@pytest.mark.parametrize(("index", "level"), [(0, "packages"), (1, "modules")])
def test_the_component_diagrams_are_the_real_imports(index: int, level: str) -> None:
    drawn = _diagrams()[index]
    real = set(GRAPH["edges"](level))
    assert not real - drawn, f"imports the document does not draw: {sorted(real - drawn)}"
    assert not drawn - real, f"arrows the code does not have: {sorted(drawn - real)}"
