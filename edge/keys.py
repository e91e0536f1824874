"""Signing key files for `edge keygen` / `edge issue` (demos, tests, a small central system)."""

from __future__ import annotations

import base64
import binascii
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

from edge.core.ed25519 import PrivateKey
from edge.core.errors import CodeError, EdgeError


class KeyFileError(EdgeError):
    """A signing key file cannot be written or read; not the device's configuration."""

    def __init__(self, message: str, *, path: Path) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path


@dataclass(frozen=True, slots=True)
class SigningKey:
    """An Ed25519 private key and the id gates know it by."""

    key_id: int
    private: PrivateKey

    @property
    def public_bytes(self) -> bytes:
        """The raw 32-byte public key."""
        return self.private.public_key().public_bytes_raw()

    @property
    def public_b64(self) -> str:
        """The public key as the configuration's [[keys]] public value."""
        return base64.b64encode(self.public_bytes).decode("ascii")


def generate(key_id: int) -> SigningKey:
    """A new random signing key."""
    if not 0 <= key_id <= 0xFFFF:
        raise CodeError(f"key id must be 0..65535, not {key_id}")
    return SigningKey(key_id, PrivateKey.generate())


def write(path: Path, key: SigningKey) -> None:
    """Save a key readable by its owner only; never overwrites an existing file."""
    private = key.private.private_bytes_raw()
    text = (
        "# edge signing key: keep this file secret\n"
        f"key_id = {key.key_id}\n"
        f'private = "{base64.b64encode(private).decode("ascii")}"\n'
        f'public = "{key.public_b64}"\n'
    )
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise KeyFileError(
            "exists already; not overwritten, choose another path", path=path
        ) from None
    except OSError as err:
        raise KeyFileError(f"cannot create: {err.strerror}", path=path) from err
    with os.fdopen(fd, "w") as file:
        file.write(text)


def read(path: Path) -> SigningKey:
    """Load a key written by `write`."""
    try:
        document = tomllib.loads(path.read_text("utf-8"))
        key_id = document["key_id"]
        private = base64.b64decode(document["private"], validate=True)
        if not isinstance(key_id, int) or len(private) != 32:
            raise ValueError("key_id must be an integer and private a 32-byte key")
        return SigningKey(key_id, PrivateKey.from_private_bytes(private))
    except OSError as err:
        raise KeyFileError(f"cannot read: {err.strerror}", path=path) from err
    except (tomllib.TOMLDecodeError, KeyError, ValueError, binascii.Error) as err:
        raise KeyFileError(f"not an edge signing key file: {err}", path=path) from err
