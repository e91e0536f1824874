"""The systemd notify protocol (sd_notify(3)), spoken directly over $NOTIFY_SOCKET.

Each message is one datagram of newline-separated VAR=value assignments sent to the
AF_UNIX datagram socket systemd names in $NOTIFY_SOCKET (a path, or an abstract socket when
it starts with '@'). Without $NOTIFY_SOCKET (not started by systemd) every call is a no-op.
The watchdog is fed from the event loop itself, so a loop that stops running stops the pings
and systemd kills and restarts the service (WatchdogSec= in the unit).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Mapping

_LOGGER = logging.getLogger(__name__)

MAX_STATUS_CHARS = 200  # STATUS= is one line for `systemctl status`; longer text is cut


def _address(value: str) -> str | bytes:
    """A socket address from $NOTIFY_SOCKET: '@name' is Linux's abstract namespace."""
    if value.startswith("@"):
        return b"\0" + value[1:].encode()
    return value


def watchdog_interval(environ: Mapping[str, str]) -> float | None:
    """Seconds between pings systemd expects (WATCHDOG_USEC), if it watches this process."""
    usec = environ.get("WATCHDOG_USEC", "")
    pid = environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and pid != str(os.getpid()):
        return None  # the watchdog is meant for another process (e.g. our parent shell)
    return int(usec) / 1_000_000


class Notifier:
    """Tells the service manager about readiness, status, stopping and liveness."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        environ = os.environ if environ is None else environ
        target = environ.get("NOTIFY_SOCKET", "")
        self._address = _address(target) if target else None
        self._socket: socket.socket | None = None
        if self._address is not None:
            self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        interval = watchdog_interval(environ)
        # Ping at half the interval, as sd_watchdog_enabled(3) recommends.
        self.ping_seconds = None if interval is None or self._socket is None else interval / 2

    @property
    def enabled(self) -> bool:
        """Whether a service manager listens."""
        return self._socket is not None

    def send(self, **fields: str) -> None:
        """Send one message (READY="1", STATUS="..."); failures are logged, never raised."""
        if self._socket is None or self._address is None:
            return
        message = "\n".join(f"{key}={value}" for key, value in fields.items())
        try:
            self._socket.sendto(message.encode(), self._address)
        except OSError as err:
            _LOGGER.warning("notify: cannot send to the service manager: %s", err)

    def ready(self, status: str) -> None:
        """Startup is complete: the service now does its work."""
        self.send(READY="1", STATUS=status.replace("\n", " ")[:MAX_STATUS_CHARS])

    def status(self, status: str) -> None:
        """A one-line status for `systemctl status`."""
        self.send(STATUS=status.replace("\n", " ")[:MAX_STATUS_CHARS])

    def stopping(self) -> None:
        """Shutdown has begun."""
        self.send(STOPPING="1")

    async def watchdog(self) -> None:
        """Ping the watchdog from the event loop until cancelled; returns at once if unwatched."""
        if self.ping_seconds is None:
            return
        _LOGGER.debug("notify: watchdog ping every %.3f s", self.ping_seconds)
        while True:
            self.send(WATCHDOG="1")
            await asyncio.sleep(self.ping_seconds)

    def close(self) -> None:
        """Release the socket."""
        if self._socket is not None:
            self._socket.close()
            self._socket = None
