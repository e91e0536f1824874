"""NFC cards through a real pcscd: vsmartcard's virtual reader (vpcd) and a virtual contactless
card (vicc, tests/nfc/virtual_card.py). The desk reads the chip of the card it issues, the
central system binds it to the pass, the gate admits the chip, and replacing the card revokes
the old chip with the old code.

pcscd has one fixed socket (/run/pcscd/pcscd.comm), so each test runs its own pcscd in a
private mount namespace with a temporary folder over /run/pcscd, and clients find it through
PCSCLITE_CSOCK_NAME; this needs root (CI runs as root). .ci/run installs the packages and sets
EDGE_REQUIRE_PCSC=1, so there a missing piece fails instead of skipping.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from integration.counter_harness import CounterProcess, Venue, read_card
from integration.sync_harness import wait_for

from drivers.scanners.pcsc import PcscReader, PcscSettings
from edge.core.errors import ScannerError

VPCD = Path("/usr/lib/pcsc/drivers/serial/libifdvpcd.so")
VICC_LIBRARY = Path("/usr/lib/python3/site-packages/virtualsmartcard/virtualsmartcard")
SYSTEM_PYTHON = "/usr/bin/python3"  # Debian's, where python3-virtualsmartcard lives
CARD = Path(__file__).with_name("virtual_card.py")
STARTUP = 30.0  # seconds for pcscd, the reader and a card to come up (a loaded machine)
UID_A = "04A1B2C3D4E5F6"  # 7-byte UIDs, as MIFARE Ultralight / NTAG and DESFire have
UID_B = "04112233445566"


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "pcscd in a private mount namespace needs root"
    for tool in ("pcscd", "unshare", "mount"):
        if shutil.which(tool) is None:
            return f"{tool} is missing"
    if not VPCD.exists():
        return "vsmartcard-vpcd is missing"
    if not VICC_LIBRARY.exists() or not Path(SYSTEM_PYTHON).exists():
        return "python3-virtualsmartcard is missing"
    try:
        import smartcard  # noqa: F401, PLC0415 - only to know it is there
    except ImportError:
        return "pyscard is missing"
    return None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Pcscd:
    """A pcscd of our own with one virtual reader listening for virtual cards on `port`."""

    socket: Path
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    def card(self, uid: str) -> subprocess.Popen[bytes]:
        """Put a card with chip `uid` on the reader; terminate the process to take it away."""
        card = subprocess.Popen(
            [SYSTEM_PYTHON, str(CARD), "--port", str(self.port), "--uid", uid],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        assert card.stdout is not None
        line = card.stdout.readline()
        assert line == b"inserted\n", f"the virtual card did not start: {line!r}"
        return card


@pytest.fixture(scope="module")
def pcscd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pcscd]:
    """One pcscd for the module: libpcsclite reads PCSCLITE_CSOCK_NAME once per process."""
    missing = _missing()
    if missing is not None:
        if os.environ.get("EDGE_REQUIRE_PCSC"):
            pytest.fail(f"NFC tests: {missing}")
        pytest.skip(f"NFC tests: {missing} (CI installs it)")
    run = tmp_path_factory.mktemp("pcscd")
    (run / "reader.conf.d").mkdir()
    port = _free_port()
    (run / "reader.conf.d" / "vpcd").write_text(
        f'FRIENDLYNAME "Virtual PCD"\nDEVICENAME /dev/null:0x{port:04X}\n'
        f"LIBPATH {VPCD}\nCHANNELID 0x{port:04X}\n"
    )
    Path("/run/pcscd").mkdir(parents=True, exist_ok=True)
    log = run / "pcscd.log"
    script = f'mount --bind "{run}" /run/pcscd && exec pcscd --foreground -c "{run}/reader.conf.d"'
    with log.open("wb") as out:
        process = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    comm = run / "pcscd.comm"

    def listening() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"pcscd ended: {log.read_text()[-2000:]}")
        if not comm.exists():
            return False
        with socket.socket() as probe:
            return probe.connect_ex(("127.0.0.1", port)) == 0

    try:
        wait_for(listening, STARTUP, "pcscd and its virtual reader")
        os.environ["PCSCLITE_CSOCK_NAME"] = str(comm)  # pyscard here and the counter's
        yield Pcscd(comm, port, process, log)
    finally:
        os.environ.pop("PCSCLITE_CSOCK_NAME", None)
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _reader() -> PcscReader:
    return PcscReader("desk-nfc", PcscSettings(reader="Virtual PCD", timeout_seconds=STARTUP))


def _stop(card: subprocess.Popen[bytes]) -> int:
    """Take the card away; how many times its UID was read while it lay there."""
    card.terminate()
    out, _ = card.communicate(timeout=10)
    return out.count(b"read\n")


def test_the_reader_reads_the_chip_of_the_card_on_it(pcscd: Pcscd) -> None:
    reader = _reader()
    card = pcscd.card(UID_A)
    try:
        assert asyncio.run(reader.read_uid()) == UID_A
    finally:
        _stop(card)
    empty = PcscReader("desk-nfc", PcscSettings(reader="Virtual PCD", timeout_seconds=1))
    with pytest.raises(ScannerError, match="no card on the reader"):
        empty.read_uid_blocking()
    absent = PcscReader("desk-nfc", PcscSettings(reader="No Such Reader"))
    with pytest.raises(ScannerError, match="no PC/SC reader matching 'No Such Reader'"):
        absent.read_uid_blocking()


def test_a_gate_reader_yields_each_card_put_on_it_once(pcscd: Pcscd) -> None:
    async def taps() -> tuple[list[bytes], list[int]]:
        reader = _reader()
        seen: asyncio.Queue[bytes] = asyncio.Queue()

        async def consume() -> None:
            async for event in reader.scans():
                seen.put_nowait(event.data)

        task = asyncio.create_task(consume())
        taps: list[bytes] = []
        reads: list[int] = []
        try:
            # A, B, then A again: the same card put back is a new tap.
            for uid in (UID_A, UID_B, UID_A):
                card = pcscd.card(uid)
                try:
                    try:
                        taps.append(await asyncio.wait_for(seen.get(), STARTUP))
                    except TimeoutError:
                        state = f"ended: {task.exception()!r}" if task.done() else "running"
                        raise AssertionError(
                            f"card {uid} not read within {STARTUP} s (read before: {taps}; "
                            f"the reading task: {state}; last error: {reader.last_error!r})"
                        ) from None
                    # Lying on the reader, the card is neither yielded nor read again.
                    await asyncio.sleep(1.5)
                    assert seen.empty()
                finally:
                    reads.append(_stop(card))
        finally:
            await reader.close()
            task.cancel()
        return taps, reads

    taps_seen, reads = asyncio.run(taps())
    assert taps_seen == [UID_A.encode(), UID_B.encode(), UID_A.encode()]
    assert reads == [1, 1, 1]


@pytest.mark.slow
def test_the_desk_binds_the_chip_and_a_replacement_revokes_it(pcscd: Pcscd, tmp_path: Path) -> None:
    venue = Venue(tmp_path)
    url = venue.central.start()
    venue.gate.start(url, pull_interval=1.0)
    desk = CounterProcess(tmp_path / "desk", venue)
    desk.counter_keys = 'nfc_reader = "desk-nfc"'
    desk.more_toml = (
        '\n[[scanners]]\nname = "desk-nfc"\ntype = "pcsc"\nreader = "Virtual PCD"\n'
        "timeout_seconds = 10\n"
    )
    desk.start(url)
    try:
        voucher = venue.sell_voucher()
        form = {
            "voucher": voucher,
            "surname": "Jones",
            "first_name": "Bo",
            "address": "n.a.",
            "valid_from": "2026-01-01",
            "shipping": "pickup",
        }
        # No card on the reader: nothing is printed, nothing issued.
        status, answer = desk.call("/api/v1/desk/issue", form)
        assert status == 422, answer
        assert answer["key"] == "nfc_failed"
        assert desk.printed() == []

        card = pcscd.card(UID_A)
        try:
            status, answer = desk.call("/api/v1/desk/issue", form)
        finally:
            _stop(card)
        assert status == 200, answer
        assert (answer["state"], answer["chip"]) == ("sent", UID_A)
        code = read_card(desk.printed()[-1])
        venue.gate_current()
        assert venue.gate.scan(UID_A) == "admitted"  # a gate's NFC reader sends the UID
        assert venue.gate.scan(code) == "admitted"

        # The same chip on a second pass is refused by the central system.
        other = venue.sell_voucher()
        card = pcscd.card(UID_A)
        try:
            status, refused = desk.call("/api/v1/desk/issue", {**form, "voucher": other})
        finally:
            _stop(card)
        assert status == 422, refused
        assert "belongs to pass" in refused["error"]

        card = pcscd.card(UID_B)
        try:
            status, replaced = desk.call("/api/v1/desk/replace", {"credential": _pass(desk, code)})
        finally:
            _stop(card)
        assert status == 200, replaced
        assert replaced["chip"] == UID_B
        venue.gate_current()
        assert venue.gate.scan(UID_A) == "replaced"
        assert venue.gate.scan(code) == "replaced"
        assert venue.gate.scan(UID_B) == "admitted"
        assert venue.gate.scan(read_card(desk.printed()[-1])) == "admitted"
    finally:
        desk.stop()
        venue.close()


def _pass(desk: CounterProcess, code: str) -> int:
    status, sale = desk.call("/api/v1/desk/lookup", {"code": code})
    assert status == 200, sale
    return int(sale["credential"])
