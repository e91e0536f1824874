"""Which central process a device talks to, and when it moves to the next one.

Several `edge-central serve` processes share one database (PostgreSQL), so their revisions
are one stream and any of them gives the same answer: a device uses one at a time for every
request and its channel, stays on it while it answers, and moves on in the configured order
when it is down. Answers that every process would give alike (a refused signature, a clock
skew, a bad request) are no reason to move.
"""

from __future__ import annotations

import logging

import aiohttp

from sync import protocol

_LOGGER = logging.getLogger(__name__)

CENTRAL_CURSOR = "sync.central"  # the central in use, for `edge status` and the next start
LOG_CURSOR = "sync.log"  # hex of the identity of the change log the store follows


class ForeignLogError(protocol.ProtocolError):
    """A central process answers for another change log than the one the store follows."""


def is_down(err: BaseException) -> bool:
    """Whether `err` says the central process (not the request) failed: refused, reset, silent
    (timeout) or a 5xx answer, also from a proxy in front of it."""
    if isinstance(err, ForeignLogError):  # misconfigured: the next one may be right
        return True
    if isinstance(err, protocol.RemoteError):
        return err.status >= 500
    if isinstance(err, aiohttp.ClientResponseError):  # the channel's handshake among them
        return err.status >= 500
    return isinstance(err, aiohttp.ClientConnectionError | TimeoutError | ConnectionError)


class Centrals:
    """The central processes in the order they are tried, the one in use, and which failed."""

    def __init__(self, urls: tuple[str, ...], *, device: str, start: str | None = None) -> None:
        if not urls:
            raise ValueError("at least one central URL")
        self._urls = urls
        self._device = device
        self._index = urls.index(start) if start in urls else 0
        self._down: set[str] = set()  # failed since the last answer of any of them
        self.switches = 0  # moves to another central since start

    @property
    def urls(self) -> tuple[str, ...]:
        """Every configured central."""
        return self._urls

    @property
    def current(self) -> str:
        """The base URL every request and the channel use now."""
        return self._urls[self._index]

    def answered(self) -> None:
        """The central in use answered: a later failure starts a new round."""
        self._down.clear()

    @property
    def fresh(self) -> bool:
        """Whether the central in use has not failed since the last answer."""
        return self.current not in self._down

    def failed(self, url: str, err: BaseException) -> None:
        """`url` failed with `err`. When it is down and still in use, move to the next.

        Several requests fail together when a process dies; the first one moves, the others
        find `url` no longer in use and change nothing (one switch, logged once).
        """
        if not is_down(err):
            return
        self._down.add(url)
        if len(self._urls) > 1 and url == self.current:
            self._index = (self._index + 1) % len(self._urls)
            self.switches += 1
            _LOGGER.warning(
                "%s: central %s is down (%s); switching to %s",
                self._device, url, str(err) or type(err).__name__, self.current,
            )  # fmt: skip
