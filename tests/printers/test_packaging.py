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


def test_the_shipped_fonts_are_package_data() -> None:
    """A wheel without the fonts would print no card text: they are listed and present."""
    import tomllib  # noqa: PLC0415

    from drivers.printers import fonts  # noqa: PLC0415

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["drivers.printers.fonts"]
    assert "*.ttf" in patterns
    assert "LICENSE" in patterns
    for path in [*map(Path, fonts.FACES.values()), fonts.FOLDER / "LICENSE"]:
        assert path.stat().st_size > 1000, path
