"""The device's own Ed25519 identity key, created on first start and never overwritten.

The sync service signs its requests to the central system with it; the central system knows
the device by the public key (the installer registers it: `edge status` and the start log
print it). The file sits beside the store, in the service's state directory, mode 0600.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import logging
import os
import stat
import tomllib
from dataclasses import dataclass
from pathlib import Path

from edge.core.ed25519 import PrivateKey
from edge.core.errors import ConfigError

_LOGGER = logging.getLogger(__name__)

FILE_NAME = "device.key"


@dataclass(frozen=True, slots=True)
class DeviceIdentity:
    """This device's key pair."""

    private: PrivateKey

    @property
    def public_b64(self) -> str:
        """The public key, base64 of its 32 raw bytes."""
        return base64.b64encode(self.private.public_key().public_bytes_raw()).decode("ascii")


def path_for(store_path: Path) -> Path:
    """Where the identity of a device with this store lives."""
    return store_path.parent / FILE_NAME


def _text(private: PrivateKey) -> str:
    raw = private.private_bytes_raw()
    public = DeviceIdentity(private).public_b64
    return (
        "# edge device identity: keep this file secret; it is created once and never replaced\n"
        f'private = "{base64.b64encode(raw).decode("ascii")}"\n'
        f'public = "{public}"\n'
    )


def _create(path: Path) -> None:
    """Write a new key atomically: a crash leaves either no file or a whole one."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as file:
            file.write(_text(PrivateKey.generate()))
            file.flush()
            os.fsync(file.fileno())
        os.link(temporary, path)  # fails if another process created the key first
        _LOGGER.info("identity: created %s", path)
    except FileExistsError:
        pass
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()


def read(path: Path) -> DeviceIdentity:
    """Load the identity; refuses a file other users can read."""
    try:
        mode = path.stat().st_mode
        text = path.read_text("ascii")
    except OSError as err:
        raise ConfigError(f"cannot read the device key: {err.strerror}", path=str(path)) from err
    except UnicodeDecodeError as err:
        raise ConfigError("not an edge device key file", path=str(path)) from err
    if stat.S_IMODE(mode) & 0o077:
        raise ConfigError(
            f"the device key is readable by others (mode {stat.S_IMODE(mode):o}); "
            f"run: chmod 600 {path}",
            path=str(path),
        )
    try:
        raw = base64.b64decode(tomllib.loads(text)["private"], validate=True)
        return DeviceIdentity(PrivateKey.from_private_bytes(raw))
    except (tomllib.TOMLDecodeError, KeyError, TypeError, ValueError, binascii.Error) as err:
        raise ConfigError(f"not an edge device key file: {err}", path=str(path)) from err


def ensure(path: Path) -> DeviceIdentity:
    """The identity at `path`, created first if there is none."""
    if not path.exists():
        try:
            _create(path)
        except OSError as err:
            raise ConfigError(
                f"cannot create the device key: {err.strerror}", path=str(path)
            ) from err
    return read(path)
