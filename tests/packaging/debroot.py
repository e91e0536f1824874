"""A fresh Debian 12 root in a folder: debootstrap minbase plus python3, cached as a tarball.

The first run downloads from the Debian mirror the host's apt uses (a few minutes); later
runs unpack .cache/debian12-minbase-python3.tar.gz in seconds. The package under test is then
installed offline into the unpacked root with dpkg.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).parent.parent.parent
CACHE = ROOT / ".cache"
TARBALL = CACHE / "debian12-minbase-python3.tar.gz"
MIRROR = "http://deb.debian.org/debian"
SUITE = "bookworm"
# What the package depends on (python3.11) and nothing more: minbase has no Python.
INCLUDE = "python3"
DEBOOTSTRAP = "/usr/sbin/debootstrap"


def _say(message: str) -> None:
    # Past pytest's capture: a first run spends minutes here and should say why.
    print(message, file=sys.__stderr__, flush=True)


def ensure_debootstrap() -> None:
    """Install Debian's debootstrap on the host when it is missing (CI runs as root)."""
    if shutil.which("debootstrap") or Path(DEBOOTSTRAP).exists():
        return
    _say("installing debootstrap (Debian package) for the package test")
    subprocess.run(["apt-get", "update", "-qq"], check=True, capture_output=True)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "debootstrap"],
        check=True,
        capture_output=True,
        env={"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
    )


def ensure_tarball() -> Path:
    """The cached root tarball, made by debootstrap on first use."""
    if TARBALL.exists():
        return TARBALL
    ensure_debootstrap()
    CACHE.mkdir(exist_ok=True)
    work = CACHE / "debian12-minbase.partial"
    shutil.rmtree(work, ignore_errors=True)
    started = time.monotonic()
    _say(f"debootstrap --variant=minbase {SUITE} (+{INCLUDE}) into {work}: once, a few minutes")
    result = subprocess.run(
        [DEBOOTSTRAP, "--variant=minbase", f"--include={INCLUDE}", SUITE, str(work), MIRROR],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode:
        raise RuntimeError(f"debootstrap failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
    for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):
        for item in (work / cache).glob("*"):
            if item.is_file():
                item.unlink()
    partial = TARBALL.with_suffix(".partial")
    subprocess.run(["tar", "-C", str(work), "-czf", str(partial), "."], check=True)
    partial.rename(TARBALL)
    shutil.rmtree(work)
    _say(f"Debian 12 root cached in {TARBALL} after {time.monotonic() - started:.0f} s")
    return TARBALL


@contextlib.contextmanager
def debian_root(where: Path) -> Iterator[Path]:
    """A fresh Debian 12 root at `where` with /proc, /sys and /dev mounted; unmounted after."""
    tarball = ensure_tarball()
    where.mkdir(parents=True, exist_ok=True)
    subprocess.run(["tar", "-C", str(where), "-xzf", str(tarball)], check=True)
    mounts: list[Path] = []
    try:
        for kind, name in (("proc", "proc"), ("sysfs", "sys")):
            subprocess.run(["mount", "-t", kind, kind, str(where / name)], check=True)
            mounts.append(where / name)
        subprocess.run(["mount", "--bind", "/dev", str(where / "dev")], check=True)
        mounts.append(where / "dev")
        yield where
    finally:
        for mounted in reversed(mounts):
            subprocess.run(["umount", "-l", str(mounted)], check=False)
        # Never delete through a mount that is still there: it would be the host's /dev.
        if not any(os.path.ismount(mounted) for mounted in mounts):
            shutil.rmtree(where, ignore_errors=True)


if __name__ == "__main__":
    print(ensure_tarball())
