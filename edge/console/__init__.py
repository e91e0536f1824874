"""The console side of the commands (`edge`, `edge-central`): parsers' help and progress."""

from edge.console.commands import DEFAULT_CONFIG, positive, subcommand
from edge.console.progress import Progress

__all__ = ["DEFAULT_CONFIG", "Progress", "positive", "subcommand"]
