"""`./dev deb`: build edge_VERSION_ARCH.deb, which ships its own virtual environment.

Debian bookworm's Python libraries are older than edge's floors (aiohttp, cryptography,
aiosqlite), so the package does what dh-virtualenv does: it builds a virtual environment for
/opt/edge with Debian's own python3 and every dependency pinned by constraints.txt, rewrites
the paths in it from the build folder to /opt/edge, and packs it with the systemd unit, udev
rules, sysusers file, /etc/edge/edge.toml (a conffile: a gate example), man pages generated
from the argument parsers, and the docs. It depends only on Debian's python3.11; the [nfc]
extra (pyscard) is in, and PC/SC readers need Debian's pcscd beside it.
"""

from __future__ import annotations

import argparse
import gzip
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from deb import manpage
from edge import __version__
from edge.cli import _parser as edge_parser
from sync.central.cli import _parser as central_parser

ROOT = Path(__file__).resolve().parent.parent
PREFIX = "/opt/edge"
DEBIAN_PYTHON = "/usr/bin/python3.11"  # bookworm's; the package depends on it
PACKAGE = "edge"
PCSC_HEADER = "/usr/include/PCSC/winscard.h"
MAINTAINER = "edge maintainers <edge@localhost>"
HERE = Path(__file__).resolve().parent
UNIT_DOCS = "Documentation=man:edge(1) file:///usr/share/doc/edge/README.md"


def _run(*args: str | Path, **kwargs: object) -> None:
    # Without PYTHONPATH: a source tree on it (./dev's own checkout) would look installed to
    # the pip that fills the package's environment, which would then skip edge itself.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    subprocess.run([str(a) for a in args], check=True, env=env, **kwargs)  # type: ignore[call-overload]


def _step(message: str) -> None:
    """Say what the next minute or so goes into (the build takes a few)."""
    print(f"./dev deb: {message}", file=sys.stderr, flush=True)


def _architecture() -> str:
    return subprocess.run(
        ["dpkg", "--print-architecture"],  # noqa: S607 - Debian's dpkg, wherever PATH has it
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def _venv(stage: Path, wheels: Path) -> None:
    """The virtual environment at stage/opt/edge, with edge and its pinned dependencies."""
    venv = stage / PREFIX.lstrip("/")
    _step(f"building edge's wheel and a venv for {PREFIX} with {DEBIAN_PYTHON}")
    _run(DEBIAN_PYTHON, "-m", "venv", "--without-pip", venv)
    # This interpreter's pip installs into Debian's (which needs no python3-venv/pip package).
    _run(sys.executable, "-m", "pip", "wheel", "-q", "--disable-pip-version-check",
         "--no-deps", "-w", wheels, ROOT)  # fmt: skip
    wheel = next(wheels.glob("edge-*.whl"))
    _step("installing edge and its dependencies (constraints.txt)")
    _run(sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "install", "-q",
         "--disable-pip-version-check", "--no-warn-script-location",
         "-c", ROOT / "constraints.txt", f"{wheel}[nfc]")  # fmt: skip
    # Paths of the build folder become the installed ones (shebangs, activate scripts).
    built = str(venv).encode()
    for script in (venv / "bin").iterdir():
        if script.is_file() and not script.is_symlink():
            data = script.read_bytes()
            if built in data:
                script.write_bytes(data.replace(built, PREFIX.encode()))
    for cache in venv.rglob("__pycache__"):
        shutil.rmtree(cache)
    for record in venv.rglob("direct_url.json"):
        record.unlink()  # names the build folder; the package is the record
    _step("compiling bytecode")
    # Compiled once here, with the installed paths, so nothing is written under /opt at run time.
    _run(DEBIAN_PYTHON, "-m", "compileall", "-q", "-j", "0", "-s", stage, "-p", "/",
         venv / "lib")  # fmt: skip


def _install(source: Path, target: Path, mode: int = 0o644) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    target.chmod(mode)


def _files(stage: Path) -> None:
    """Everything but the venv: commands, unit, rules, users, configuration, man pages, docs."""
    bin_dir = stage / "usr/bin"
    bin_dir.mkdir(parents=True)
    for command in ("edge", "edge-central"):
        (bin_dir / command).symlink_to(f"{PREFIX}/bin/{command}")
    unit = (ROOT / "systemd/edge.service").read_text(encoding="utf-8")
    unit = "\n".join(
        UNIT_DOCS if line.startswith("Documentation=") else line for line in unit.splitlines()
    )
    (stage / "lib/systemd/system").mkdir(parents=True)
    (stage / "lib/systemd/system/edge.service").write_text(unit + "\n", encoding="utf-8")
    _install(ROOT / "systemd/70-edge.rules", stage / "lib/udev/rules.d/70-edge.rules")
    _install(ROOT / "systemd/edge.sysusers", stage / "usr/lib/sysusers.d/edge.conf")
    _install(ROOT / "config/gate.toml", stage / "etc/edge/edge.toml", 0o640)
    _install(ROOT / "constraints.txt", stage / "usr/share/edge/constraints.txt")
    man = stage / "usr/share/man/man1"
    man.mkdir(parents=True)
    for parser, also in ((edge_parser(), "edge-central"), (central_parser(), "edge")):
        page = manpage.render(parser, version=__version__, see_also=(also, "systemctl"))
        with gzip.GzipFile(man / f"{parser.prog}.1.gz", "wb", mtime=0) as file:
            file.write(page.encode("utf-8"))
    doc = stage / "usr/share/doc/edge"
    _install(ROOT / "LICENSE", doc / "copyright")
    _install(ROOT / "README.md", doc / "README.md")
    for path in sorted((ROOT / "docs").glob("*.md")):
        _install(path, doc / "docs" / path.name)
    for path in sorted((ROOT / "config").iterdir()):
        _install(path, doc / "examples" / path.name)


def _control(stage: Path, version: str, arch: str) -> None:
    size_kb = sum(p.lstat().st_size for p in stage.rglob("*") if not p.is_dir()) // 1024
    control = stage / "DEBIAN"
    control.mkdir()
    (control / "control").write_text(
        f"Package: {PACKAGE}\n"
        f"Version: {version}\n"
        f"Architecture: {arch}\n"
        f"Maintainer: {MAINTAINER}\n"
        f"Installed-Size: {size_kb}\n"
        "Depends: python3.11, libc6\n"
        "Recommends: systemd, udev\n"
        "Suggests: pcscd\n"
        "Section: misc\n"
        "Priority: optional\n"
        "Description: gate and counter service for venues\n"
        " Decides offline about tickets and passes at gates, drives turnstiles, prints\n"
        " tickets and cards at counters, and syncs with the central ticketing system.\n"
        " Ships its own Python environment under /opt/edge.\n",
        encoding="utf-8",
    )
    (control / "conffiles").write_text("/etc/edge/edge.toml\n", encoding="utf-8")
    for script in ("postinst", "prerm", "postrm"):
        _install(HERE / script, control / script, 0o755)


def build(out: Path, version: str | None = None) -> Path:
    """Build the package into `out`; returns its path."""
    version = version or __version__
    arch = _architecture()
    work = ROOT / "build" / "deb"
    # setuptools' build/lib keeps files deleted from the tree; they would land in the wheel.
    shutil.rmtree(ROOT / "build", ignore_errors=True)
    stage, wheels = work / "root", work / "wheels"
    stage.mkdir(parents=True)
    _venv(stage, wheels)
    _files(stage)
    _control(stage, version, arch)
    out.mkdir(parents=True, exist_ok=True)
    package = out / f"{PACKAGE}_{version}_{arch}.deb"
    _step(f"packing {package.name}")
    _run("dpkg-deb", "--root-owner-group", "-Zxz", "-z2", "--build", stage, package,
         stdout=subprocess.DEVNULL)  # fmt: skip
    shutil.rmtree(work)
    return package


def main() -> int:
    """Entry point of `./dev deb`."""
    parser = argparse.ArgumentParser(prog="./dev deb", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=ROOT / "dist", help="folder for the .deb (default: dist/)"
    )
    parser.add_argument("--version", help="package version (default: edge's own)")
    args = parser.parse_args()
    if not Path(DEBIAN_PYTHON).exists():
        print(f"./dev deb: needs Debian's {DEBIAN_PYTHON} (bookworm's python3)", file=sys.stderr)
        return 2
    if not shutil.which("swig") or not Path(PCSC_HEADER).exists():
        # pyscard (PC/SC readers, the [nfc] extra) builds from source against libpcsclite.
        print("./dev deb: needs swig and libpcsclite-dev (apt-get install swig libpcsclite-dev)",
              file=sys.stderr)  # fmt: skip
        return 2
    started = time.monotonic()
    package = build(args.out.resolve(), args.version)
    size = package.stat().st_size / 1e6
    print(f"built {package} ({size:.1f} MB) in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    os.umask(0o022)
    sys.exit(main())
