"""Every package under drivers/ and edge/ ships: a missing __init__.py drops it from a wheel."""

from __future__ import annotations

from pathlib import Path

from setuptools import find_packages

ROOT = Path(__file__).parents[2]


def test_every_source_folder_is_a_package() -> None:
    found = set(find_packages(str(ROOT), include=["edge*", "drivers*", "sync*"]))
    folders = {
        ".".join(path.parent.relative_to(ROOT).parts)
        for top in ("edge", "drivers", "sync")
        for path in (ROOT / top).rglob("*.py")
        if "__pycache__" not in path.parts
    }
    assert folders <= found
