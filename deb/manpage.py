"""Man pages (roff, man(7) macros) generated from the commands' argparse parsers.

The parsers are the one description of every command, option, default and example; the page
walks them, so `man edge` and `edge --help` cannot disagree.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime


def _roff(text: str) -> str:
    """Text safe in a roff line: backslashes, leading dots and quotes, hyphens as minus signs."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    if text.startswith((".", "'")):
        text = "\\&" + text
    return text


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _options(parser: argparse.ArgumentParser) -> list[str]:
    lines = []
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
            continue
        if action.option_strings:
            names = ", ".join(action.option_strings)
            if action.nargs != 0:
                names += f" {action.metavar or action.dest.upper()}"
        else:
            names = str(action.metavar or action.dest)
        help_text = (action.help or "") % {"default": action.default, "prog": parser.prog}
        if action.choices and not isinstance(action.choices, dict):
            help_text += f" (one of: {', '.join(map(str, action.choices))})"
        lines += [".TP", f"\\fB{_roff(names)}\\fR", _roff(help_text)]
    return lines


def _command(name: str, parser: argparse.ArgumentParser) -> list[str]:
    lines = [".SS " + _roff(name)]
    if parser.description:
        lines += [_roff(parser.description), ".PP"]
    usage = parser.format_usage().removeprefix("usage: ").strip()
    lines += [".nf", _roff(usage), ".fi"]
    lines += _options(parser)
    if parser.epilog and parser.epilog.startswith("examples:"):
        lines += [".PP", "Examples:", ".PP", ".nf", ".RS 4"]
        lines += [_roff(line.strip()) for line in parser.epilog.splitlines()[1:]]
        lines += [".RE", ".fi"]
    for child, child_parser in _subparsers(parser).items():
        lines += _command(f"{name} {child}", child_parser)
    return lines


def render(parser: argparse.ArgumentParser, *, version: str, see_also: tuple[str, ...] = ()) -> str:
    """The man page of one command in section 1."""
    prog = parser.prog
    date = datetime.now(UTC).strftime("%Y-%m-%d")
    lines = [
        f'.TH {prog.upper()} 1 "{date}" "edge {version}" "User Commands"',
        ".SH NAME",
        f"{_roff(prog)} \\- {_roff(parser.description or '')}",
        ".SH SYNOPSIS",
        f"\\fB{_roff(prog)}\\fR [\\fIOPTIONS\\fR] \\fICOMMAND\\fR ...",
        ".SH OPTIONS",
        *_options(parser),
    ]
    if parser.epilog:
        lines += [".PP", _roff(parser.epilog)]
    lines += [".SH COMMANDS"]
    for name, child in _subparsers(parser).items():
        lines += _command(name, child)
    lines += [
        ".SH FILES",
        ".TP",
        "/etc/edge/edge.toml",
        "the device's configuration",
        ".TP",
        "/var/lib/edge",
        "the store, the device key",
        ".SH SEE ALSO",
        ", ".join(f"\\fB{_roff(page)}\\fR(1)" for page in see_also) or "systemctl(1)",
        "",
    ]
    return "\n".join(lines)
