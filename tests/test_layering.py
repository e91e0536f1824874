"""The layering of DESIGN.md, checked from every import of every module (lazy ones too).

Each area may import only the areas listed for it; the areas form no cycle.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("edge", "drivers", "sync")

# What each area may import besides itself. The bare package roots (`edge` for __version__,
# `sync`, `drivers`) hold nothing else and are open to all. The order is bottom-up.
ALLOWED: dict[str, set[str]] = {
    "edge.core": set(),
    "edge.console": {"edge.core"},
    "edge.web": {"edge.core"},
    "drivers": {"edge.core", "edge.web"},
    "edge.store": {"edge.core"},
    "sync.protocol": {"edge.core"},
    "edge.gate": {"edge.core", "edge.store", "drivers"},
    "edge.counter": {"edge.core", "edge.web", "edge.store", "drivers", "sync.protocol"},
    "edge.ops": {"edge.core", "edge.web", "edge.store", "edge.gate", "edge.counter", "drivers"},
    "sync.client": {"edge.core", "edge.web", "edge.store", "sync.protocol", "edge.ops"},
    "sync.pretix": {"edge.core", "edge.store", "edge.gate", "edge.ops"},
    "sync.central": {"edge.core", "edge.console", "edge.web", "sync.protocol"},
    "edge.wiring": {
        "edge.core",
        "edge.console",
        "edge.web",
        "edge.store",
        "edge.gate",
        "edge.counter",
        "edge.ops",
        "drivers",
        "sync.protocol",
        "sync.client",
        "sync.pretix",
    },
}


def area(module: str) -> str | None:
    """The area a dotted module name belongs to; None for a bare package root (`edge`)."""
    if module in PACKAGES:
        return None
    parts = module.split(".")
    if parts[0] == "drivers":
        return "drivers"
    if parts[0] == "sync":
        return "sync.protocol" if parts[1:2] == ["protocol"] else ".".join(parts[:2])
    if parts[1] in ("core", "console", "web", "store", "gate", "counter", "ops"):
        return ".".join(parts[:2])
    return "edge.wiring"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path) -> Iterator[str]:
    """Every project module `path` imports, at any depth of the file."""
    tree = ast.parse(path.read_text("utf-8"))
    package = module_name(path).rsplit(".", 1)[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            names = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            if name.split(".")[0] in PACKAGES and (ROOT / name.replace(".", "/")).exists():
                yield name  # a package
            elif (
                name.split(".")[0] in PACKAGES
                and (ROOT / (name.replace(".", "/") + ".py")).exists()
            ):
                yield name


def graph() -> dict[str, dict[str, set[str]]]:
    """area -> imported area -> the modules that import it."""
    edges: dict[str, dict[str, set[str]]] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            source = area(module_name(path))
            if source is None:
                continue
            for name in imports(path):
                target = area(name)
                if target is not None and target != source:
                    edges.setdefault(source, {}).setdefault(target, set()).add(module_name(path))
    return edges


def test_every_module_belongs_to_a_known_area() -> None:
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            name = module_name(path)
            assert name in PACKAGES or area(name) in ALLOWED, path


def test_each_area_imports_only_what_it_may() -> None:
    wrong = {
        f"{source} -> {target}": sorted(modules)
        for source, targets in graph().items()
        for target, modules in targets.items()
        if target not in ALLOWED[source]
    }
    assert wrong == {}


def test_the_areas_have_no_cycle() -> None:
    edges = {source: set(targets) for source, targets in graph().items()}
    done: set[str] = set()

    def visit(node: str, path: tuple[str, ...]) -> None:
        assert node not in path, f"import cycle: {' -> '.join((*path, node))}"
        if node in done:
            return
        for target in sorted(edges.get(node, ())):
            visit(target, (*path, node))
        done.add(node)

    for node in sorted(edges):
        visit(node, ())


def test_the_rules_have_no_cycle_and_no_unknown_area() -> None:
    for source, targets in ALLOWED.items():
        assert targets <= set(ALLOWED), source
        assert source not in targets


def test_sql_lives_only_in_the_store_and_the_central_database() -> None:
    """No module outside edge/store/ and sync/central/ opens SQLite or runs a statement."""
    owners = ("edge.store", "sync.central")
    wrong = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if (area(module_name(path)) or "") in owners:
                continue
            for node in ast.walk(ast.parse(path.read_text("utf-8"))):
                if isinstance(node, ast.Import | ast.ImportFrom):
                    names = [a.name for a in node.names] + [getattr(node, "module", "") or ""]
                    if {"sqlite3", "aiosqlite"} & {n.split(".")[0] for n in names}:
                        wrong.append(f"{module_name(path)}:{node.lineno} imports SQLite")
                elif (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)
                    and node.func.attr in ("execute", "executemany", "executescript")
                ):
                    wrong.append(f"{module_name(path)}:{node.lineno} runs SQL")
    assert wrong == []


# The decision core is pure (DESIGN principle 1): no I/O library, no event loop, no database.
CORE_MAY_IMPORT = {
    "__future__", "base64", "dataclasses", "datetime", "enum", "hashlib", "ipaddress",
    "struct", "types", "typing", "collections", "functools", "re", "math", "string",
    "unicodedata", "json", "nacl", "edge",
}  # fmt: skip


def test_the_core_imports_no_io() -> None:
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / "edge" / "core").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if isinstance(node, ast.Import):
                tops = [alias.name.split(".")[0] for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                tops = [node.module.split(".")[0]]
            else:
                continue
            for top in tops:
                if top not in CORE_MAY_IMPORT:
                    found.setdefault(top, set()).add(path.name)
    assert found == {}, f"edge.core imports beyond its pure set: {found}"
