"""Argument parsing shared by `edge` and `edge-central`: each subcommand shows an example."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

DEFAULT_CONFIG = Path("/etc/edge/edge.toml")  # what every command reads without --config


def subcommand(sub: Any, name: str, summary: str, *examples: str) -> argparse.ArgumentParser:
    """A subparser whose --help ends with worked examples (kept as written, one a line)."""
    epilog = "examples:\n" + "\n".join(f"  {line}" for line in examples) if examples else None
    parser: argparse.ArgumentParser = sub.add_parser(
        name,
        help=summary,
        description=summary[:1].upper() + summary[1:] + ".",
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    return parser


def positive(name: str, maximum: int, hint: str = "") -> Any:
    """An argparse type: an integer 1..maximum, with a message that names the option's rule."""

    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} is a whole number, not {value!r}") from None
        if not 1 <= number <= maximum:
            raise argparse.ArgumentTypeError(
                f"{name} must be 1..{maximum:,}, not {number}" + (f"; {hint}" if hint else "")
            )
        return number

    return parse
