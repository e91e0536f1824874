"""The central system's side of the push channel, against a real server on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import resource
import ssl
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from cryptography.x509.oid import NameOID

from edge.store.database import Store
from edge.web import http
from sync import protocol
from sync.central.db import CentralDB
from sync.central.server import MAX_CONNECTIONS, Central, serve
from sync.client.replicator import Replicator
from sync.client.settings import SyncConfig
from sync.protocol import CloseCode, EnvelopeKind

WAIT = 10.0


class _Central:
    def __init__(self, db: CentralDB, url: str, identity: Ed25519PrivateKey) -> None:
        self.db, self.url, self.identity = db, url, identity

    def headers(self, path: str, device: str = "gate-1") -> dict[str, str]:
        return protocol.sign_request(
            self.identity, device, method="GET", path=path,
            time_ms=int(time.time() * 1000), body=b"",
        )  # fmt: skip


@pytest.fixture
async def central(tmp_path: Path) -> AsyncIterator[_Central]:
    db = CentralDB(tmp_path / "central.db")
    db.keys.add()
    identity = Ed25519PrivateKey.generate()
    db.devices.add("gate-1", protocol.public_bytes(identity))
    # The server has its own connection, as in production: it notices the commits made
    # through `db` by polling, like those of the admin CLI.
    served = CentralDB(tmp_path / "central.db")
    ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    server = asyncio.create_task(serve(served, "127.0.0.1", 0, ready.set_result))
    try:
        yield _Central(db, await ready, identity)
    finally:
        server.cancel()
        with pytest.raises(asyncio.CancelledError):
            await server
        served.close()
        db.close()


async def _open(
    central: _Central, session: aiohttp.ClientSession, revision: int = 0, device: str = "gate-1"
) -> aiohttp.ClientWebSocketResponse:
    path = protocol.channel_path(revision)
    return await session.ws_connect(central.url + path, headers=central.headers(path, device))


async def _next(ws: aiohttp.ClientWebSocketResponse) -> aiohttp.WSMessage:
    return await asyncio.wait_for(ws.receive(), WAIT)


async def test_the_channel_sends_what_the_edge_lacks_and_follows_its_answers(
    central: _Central,
) -> None:
    db = central.db
    product = db.catalogue.add_product("Ticket")
    _, sold = db.sales.sell(product, count=2)
    head = db.log.head()
    trusted = {k: (public, retired) for k, public, retired in db.keys.public_keys()}
    async with aiohttp.ClientSession() as session, await _open(central, session) as ws:
        first = protocol.open_envelope((await _next(ws)).data, trusted.get,
                                       limit=protocol.MAX_PUSH_BYTES)  # fmt: skip
        assert (first.kind, first.first, first.last) == (EnvelopeKind.CHANGES, 0, head)
        await ws.send_bytes(protocol.push_answer(head, "applied"))
        db.workflows.revoke_code(sold[0].code)  # committed by "another process": the poll
        second = protocol.open_envelope((await _next(ws)).data, trusted.get)
        assert (second.first, second.last) == (head, head + 1)
        # A gap answer: nothing more until the head moves, then from the reported revision.
        await ws.send_bytes(protocol.push_answer(1, "gap"))
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(ws.receive(), 0.3)
        db.workflows.revoke_code(sold[1].code)
        third = protocol.open_envelope((await _next(ws)).data, trusted.get)
        assert (third.first, third.last) == (1, head + 2)


@pytest.mark.parametrize(
    ("device", "signed", "revision", "status"),
    [
        ("gate-1", False, 0, 401),
        ("stranger", True, 0, 403),
        ("gate-1", True, 10**6, 409),
    ],
)
async def test_the_handshake_is_a_signed_request(
    central: _Central, device: str, signed: bool, revision: int, status: int
) -> None:
    path = protocol.channel_path(revision)
    headers = central.headers(path, device)
    if not signed:
        headers[protocol.SIGNATURE_HEADER] = headers[protocol.SIGNATURE_HEADER][::-1]
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(central.url + path, headers=headers)
    assert refused.value.status == status


@pytest.mark.parametrize(
    ("frame", "code"),
    [(b"\xc1 not msgpack", CloseCode.REFUSED), ("text", CloseCode.UNSUPPORTED)],
)
async def test_a_bad_answer_closes_the_channel(
    central: _Central, frame: bytes | str, code: CloseCode
) -> None:
    async with aiohttp.ClientSession() as session, await _open(central, session) as ws:
        await _next(ws)  # the keys
        if isinstance(frame, str):
            await ws.send_str(frame)
        else:
            await ws.send_bytes(frame)
        message = await _next(ws)
        assert (message.type, ws.close_code) == (aiohttp.WSMsgType.CLOSE, code)


async def test_a_newer_channel_replaces_the_older_and_a_removed_device_is_closed(
    central: _Central,
) -> None:
    async with aiohttp.ClientSession() as session:
        old = await _open(central, session)
        await _next(old)
        new = await _open(central, session)
        assert (await _next(old)).type is aiohttp.WSMsgType.CLOSE
        assert old.close_code == CloseCode.REPLACED
        message = await _next(new)
        await new.send_bytes(protocol.push_answer(central.db.log.head(), "applied"))
        assert message.type is aiohttp.WSMsgType.BINARY
        central.db.devices.remove("gate-1")
        product = central.db.catalogue.add_product("Ticket")
        central.db.sales.sell(product)  # the head moves: the channel looks again
        assert (await _next(new)).type is aiohttp.WSMsgType.CLOSE
        assert new.close_code == CloseCode.REMOVED


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"proxy": "socks5://p:1"}, "proxy must be an http"),
        ({"ca_file": "/etc/ca.pem"}, "url is not https"),
        ({"keepalive_seconds": 0.0}, "keepalive_seconds must be"),
    ],
)
def test_channel_settings_are_checked(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SyncConfig(url="http://central:8400", **fields)  # type: ignore[arg-type]


def _tls_files(directory: Path) -> tuple[Path, ssl.SSLContext]:
    """A CA (its PEM file) and the server context of a certificate it issued for 127.0.0.1."""
    now = datetime.now(UTC)

    def certificate(
        subject: str,
        key: ec.EllipticCurvePrivateKey,
        issuer: str,
        signer: ec.EllipticCurvePrivateKey,
        *,
        ca: bool,
    ) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(hours=1))
            .not_valid_after(now + timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False,
            )
        return builder.sign(signer, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    server_key = ec.generate_private_key(ec.SECP256R1())
    ca_path, cert_path, key_path = (directory / n for n in ("ca.pem", "cert.pem", "key.pem"))
    ca_path.write_bytes(
        certificate("venue CA", ca_key, "venue CA", ca_key, ca=True).public_bytes(Encoding.PEM)
    )
    cert_path.write_bytes(
        certificate("central", server_key, "venue CA", ca_key, ca=False).public_bytes(Encoding.PEM)
    )
    key_path.write_bytes(
        server_key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_path, key_path)
    return ca_path, context


class _ConnectProxy:
    """An HTTP CONNECT proxy on loopback that counts the tunnels it opened."""

    def __init__(self) -> None:
        self.tunnels: list[str] = []
        self.server: asyncio.Server | None = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        method, target, _ = head.split(b"\r\n", 1)[0].decode().split(" ", 2)
        if method != "CONNECT":
            writer.write(b"HTTP/1.1 405 Method Not Allowed\r\n\r\n")
            writer.close()
            return
        host, port = target.rsplit(":", 1)
        up_reader, up_writer = await asyncio.open_connection(host, int(port))
        self.tunnels.append(target)
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            sink.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


async def _until(condition: Callable[[], bool], what: str) -> None:
    deadline = asyncio.get_running_loop().time() + WAIT
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


async def test_the_channel_runs_over_tls_through_a_proxy_with_a_pinned_ca(
    store: Store, tmp_path: Path
) -> None:
    db = CentralDB(tmp_path / "central.db")
    db.keys.add()
    identity = Ed25519PrivateKey.generate()
    db.devices.add("gate-1", protocol.public_bytes(identity))
    _, sold = db.sales.sell(db.catalogue.add_product("Ticket"), count=2)
    await store.put_keys(list(db.keys.public_keys()))
    ca_path, server_context = _tls_files(tmp_path)
    served = CentralDB(tmp_path / "central.db")
    runner = web.AppRunner(Central(served).app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_context).start()
    url = f"https://127.0.0.1:{runner.addresses[0][1]}"
    proxy = _ConnectProxy()
    proxy_url = await proxy.start()
    settings = SyncConfig(url=url, push_listen=False, proxy=proxy_url, ca_file=str(ca_path),
                          keepalive_seconds=1.0, pull_interval_seconds=3600)  # fmt: skip
    client = Replicator(settings, store, device="gate-1", identity=identity)
    # The same central system without the pinned CA: its certificate is not trusted.
    other = await Store.open(tmp_path / "other.db")
    unpinned = Replicator(
        SyncConfig(url=url, push_listen=False, channel=False, timeout_seconds=2),
        other,
        device="gate-1",
        identity=identity,
    )
    tasks = [asyncio.create_task(client.run()), asyncio.create_task(unpinned.run())]
    try:
        await _until(lambda: client.state.channel, "the channel")
        head = db.log.head()
        await _until(lambda: client.state.revision == head, "the bootstrap")
        db.workflows.revoke_code(sold[0].code)
        await _until(lambda: client.state.revision == head + 1, "the revocation")
        assert client.state.pushes == {"applied": 1}  # through the channel, not a pull
        assert len(proxy.tunnels) >= 2  # requests and the channel both went through it
        await _until(lambda: "certificate" in unpinned.state.last_error, "the refused cert")
        assert unpinned.state.revision is None
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if proxy.server is not None:
            proxy.server.close()
        await runner.cleanup()
        await other.close()
        served.close()
        db.close()


async def test_the_central_system_keeps_a_connection_per_gate(central: _Central) -> None:
    # A device's servers keep 512 connections; every gate holds a channel to the central one.
    del central
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    assert http.GUARD.cap == http.connection_cap(soft, MAX_CONNECTIONS)
    assert http.connection_cap(20_000, MAX_CONNECTIONS) == 15_000
    assert http.connection_cap(8192, MAX_CONNECTIONS) == 6144  # LimitNOFILE of the units
