"""sync/ depends on the edge only through its public surface: errors and the code format."""

from __future__ import annotations

import ast
from pathlib import Path

SYNC = Path(__file__).parent.parent.parent / "sync"
PUBLIC = {"edge.errors", "edge.codes"}  # docs/protocol.md, "Layering"


def test_sync_imports_only_the_public_edge_modules() -> None:
    found: dict[str, set[str]] = {}
    for path in sorted(SYNC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                if name == "edge" or name.startswith("edge."):
                    found.setdefault(name, set()).add(str(path.relative_to(SYNC)))
    assert set(found) <= PUBLIC, {k: v for k, v in found.items() if k not in PUBLIC}
    assert "protocol.py" not in found.get("edge.codes", set())  # codecs: errors only
