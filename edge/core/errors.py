"""The one error tree of the project; drivers and sync raise these too (public API)."""

from __future__ import annotations


class EdgeError(Exception):
    """Root of every error this project raises on purpose."""


class ConfigError(EdgeError, ValueError):
    """A configuration file or value is invalid; the daemon cannot start with it."""

    def __init__(self, message: str, *, path: str | None = None, key: str | None = None) -> None:
        where = ": ".join(part for part in (path, key) if part)
        super().__init__(f"{where}: {message}" if where else message)
        self.path = path
        self.key = key


class CodeError(EdgeError, ValueError):
    """A scanned or minted code cannot be parsed or built."""


class StoreError(EdgeError):
    """The local store cannot be opened, migrated or written."""


class SyncError(EdgeError):
    """Talking to the central system failed or it sent something we reject."""


class DeviceError(EdgeError, OSError):
    """A device is absent, unplugged, not answering or reports a fault."""

    def __init__(self, message: str, *, device: str | None = None) -> None:
        super().__init__(f"{device}: {message}" if device else message)
        self.device = device


class ScannerError(DeviceError):
    """A scanner cannot be opened or read."""


class ActuatorError(DeviceError):
    """A gate actuator (relay, light, buzzer) did not do what it was told."""


class PrinterError(DeviceError):
    """A printer cannot print the job."""


class PaperOutError(PrinterError):
    """The printer is out of paper or cards; the job waits for a refill."""


class PrinterAttentionError(PrinterError):
    """The printer needs staff (jam, head open); the job waits until it is ready again."""


class PrintUncertainError(PrinterError):
    """A job was sent but the printer did not confirm it: it may have printed; never resent."""


class StoreRefusedError(StoreError):
    """The store file exists but is not a store; only `edge init` may start it afresh."""
