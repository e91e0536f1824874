"""The Debian package: built by `./dev deb`, installed, upgraded and purged in a fresh Debian 12
root (debootstrap minbase, offline from the built file), where the daemon answers /health.

systemd cannot run in a chroot, so the daemon starts the way the unit starts it, as the `edge`
user with --config /etc/edge/edge.toml. Prints the package size, the install time and the
time from `dpkg -i` to a gate answering /health. Needs root (mounts, chroot), Debian's
dpkg-deb and debootstrap (installed when missing) and the Debian mirror on first run.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from debroot import debian_root

from edge import __version__

ROOT = Path(__file__).parent.parent.parent
HEALTH_SECONDS = 60  # a daemon that has not answered by then has failed to start
CHROOT = shutil.which("chroot") or "/usr/sbin/chroot"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="chroot and mounts need root (CI runs as root)"),
    pytest.mark.skipif(not shutil.which("dpkg-deb"), reason="needs Debian's dpkg"),
]


def _say(message: str) -> None:
    print(message, file=sys.__stderr__, flush=True)


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The package, built the way `./dev deb` builds it ($EDGE_DEB: test that file instead)."""
    if os.environ.get("EDGE_DEB"):
        return Path(os.environ["EDGE_DEB"])
    out = tmp_path_factory.mktemp("dist")
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "deb.build", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (deb,) = out.glob("edge_*.deb")
    _say(
        f"\npackage {deb.name}: {deb.stat().st_size / 1e6:.1f} MB, "
        f"built in {time.monotonic() - started:.0f} s"
    )
    return deb


@pytest.fixture
def root(tmp_path: Path) -> Iterator[Path]:
    with debian_root(tmp_path / "root") as where:
        yield where


def chroot(root: Path, *args: str, user: str | None = None) -> subprocess.CompletedProcess[str]:
    command = [CHROOT, *([f"--userspec={user}"] if user else []), str(root), *args]
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "HOME": "/root"}
    return subprocess.run(
        command, capture_output=True, text=True, env=env, timeout=300, check=False
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _health(root: Path) -> float:
    """Start the daemon as the unit does, wait for /health, stop it; seconds until it answered."""
    # The admin's one edit to the example: a metrics port free on this shared test host.
    config = root / "etc/edge/edge.toml"
    port = _free_port()
    config.write_text(
        re.sub(r"(?m)^port = \d+", f"port = {port}", config.read_text(encoding="utf-8")),
        encoding="utf-8",
    )
    started = time.monotonic()
    daemon = subprocess.Popen(
        [CHROOT, "--userspec=edge:edge", str(root), "/usr/bin/edge", "run", "--config",
         "/etc/edge/edge.toml"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
    )  # fmt: skip
    answered = None
    try:
        while daemon.poll() is None and time.monotonic() - started < HEALTH_SECONDS:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    body = r.read().decode()
                answered = time.monotonic() - started
                break
            except OSError:
                time.sleep(0.1)
    finally:
        daemon.terminate()
        output = daemon.communicate(timeout=30)[0].decode(errors="replace")
    assert answered is not None, f"no /health answer; the daemon said:\n{output[-3000:]}"
    assert '"device": "north-gate-1"' in body
    return answered


def _bump(package: Path, version: str, out: Path) -> Path:
    """The same package under a later version: what an upgrade installs."""
    tree = out / "tree"
    subprocess.run(["dpkg-deb", "-R", str(package), str(tree)], check=True)
    control = tree / "DEBIAN" / "control"
    text = control.read_text(encoding="utf-8").replace(
        f"Version: {__version__}\n", f"Version: {version}\n"
    )
    control.write_text(text, encoding="utf-8")
    later = out / f"edge_{version}.deb"
    subprocess.run(
        ["dpkg-deb", "--root-owner-group", "-Znone", "-b", str(tree), str(later)],
        check=True,
        capture_output=True,
    )
    return later


def test_the_package_lists_unit_rules_conffile_and_man_pages(package: Path) -> None:
    listing = subprocess.run(
        ["dpkg-deb", "-c", str(package)], capture_output=True, text=True, check=True
    ).stdout
    for path in (
        "./lib/systemd/system/edge.service",
        "./lib/udev/rules.d/70-edge.rules",
        "./usr/lib/sysusers.d/edge.conf",
        "./etc/edge/edge.toml",
        "./usr/share/man/man1/edge.1.gz",
        "./usr/share/man/man1/edge-central.1.gz",
        "./usr/share/edge/constraints.txt",
        "./usr/share/doc/edge/copyright",
        "./opt/edge/bin/edge",
        "./usr/bin/edge -> /opt/edge/bin/edge",
        "./usr/bin/edge-central -> /opt/edge/bin/edge-central",
    ):
        assert path in listing, path
    conffiles = subprocess.run(
        ["dpkg-deb", "-I", str(package), "conffiles"], capture_output=True, text=True, check=True
    ).stdout
    assert conffiles == "/etc/edge/edge.toml\n"


def test_install_upgrade_and_purge_in_a_fresh_debian_root(
    package: Path, root: Path, tmp_path: Path
) -> None:
    shutil.copyfile(package, root / "tmp/edge.deb")
    assert chroot(root, "python3", "-c", "import aiohttp").returncode != 0  # nothing of ours
    # Offline: the root has no apt lists and gets no network use from dpkg.
    started = time.monotonic()
    installed = chroot(root, "dpkg", "-i", "/tmp/edge.deb")
    install_seconds = time.monotonic() - started
    assert installed.returncode == 0, installed.stdout + installed.stderr
    health_seconds = _health(root)
    total = time.monotonic() - started
    _say(
        f"install {install_seconds:.1f} s; dpkg -i to /health {total:.1f} s "
        f"(daemon start to /health {health_seconds:.1f} s)"
    )

    assert chroot(root, "edge", "--version").stdout == f"edge {__version__}\n"
    assert chroot(root, "edge-central", "--version").stdout == f"edge-central {__version__}\n"
    status = chroot(root, "edge", "status", user="edge:edge")  # the default --config
    assert status.returncode == 0, status.stderr
    assert status.stdout.startswith("device north-gate-1  store /var/lib/edge/edge.db")
    assert (root / "usr/share/man/man1/edge.1.gz").exists()
    stat = (root / "var/lib/edge").stat()
    assert (stat.st_mode & 0o777, chroot(root, "stat", "-c", "%U", "/var/lib/edge").stdout) == (
        0o700,
        "edge\n",
    )

    # Upgrade: the admin's edit of the conffile survives, the store stays, it starts again.
    later = _bump(package, f"{__version__}+1", tmp_path)
    shutil.copyfile(later, root / "tmp/edge-later.deb")
    edited = (root / "etc/edge/edge.toml").read_text(encoding="utf-8")
    upgraded = chroot(root, "dpkg", "-i", "/tmp/edge-later.deb")
    assert upgraded.returncode == 0, upgraded.stdout + upgraded.stderr
    assert (root / "etc/edge/edge.toml").read_text(encoding="utf-8") == edited
    assert (root / "var/lib/edge/edge.db").exists()
    version = chroot(root, "dpkg-query", "-W", "-f", "${Version}", "edge").stdout
    assert version == f"{__version__}+1"
    _health(root)

    purged = chroot(root, "dpkg", "--purge", "edge")
    assert purged.returncode == 0, purged.stdout + purged.stderr
    for gone in (
        "opt/edge",
        "etc/edge",
        "var/lib/edge",
        "usr/bin/edge",
        "lib/systemd/system/edge.service",
    ):
        assert not (root / gone).exists(), gone
    assert chroot(root, "dpkg-query", "-W", "edge").returncode != 0
