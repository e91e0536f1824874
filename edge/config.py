"""The one configuration file: TOML, validated completely before anything starts.

Each section is a frozen dataclass; its fields are the allowed keys. Each area owns the
dataclass of its section ([[lanes]] edge.gate.settings, [counter] edge.counter.settings,
[metrics] edge.ops.settings, [sync] sync.client.settings, [pretix] sync.pretix.settings), as
driver sections are checked against the settings dataclass that drivers.registry names for
their `type`. This module keeps [device] and [[keys]], composes the sections into one Config
and checks what refers across them.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from drivers.registry import ACTUATORS, PRINTERS, SCANNERS, DriverType
from edge.core.decide import GateRules
from edge.core.errors import ConfigError
from edge.core.messages import LANGUAGES
from edge.core.tables import MAX_NAME, build
from edge.counter.settings import CounterConfig
from edge.gate.settings import LaneConfig
from edge.ops.settings import MetricsConfig
from sync.client.settings import SyncConfig
from sync.pretix.settings import PretixConfig

if TYPE_CHECKING:  # ticket and card layouts load only for a configuration that has some
    from edge.counter.templates import Template

T = TypeVar("T")

MAX_CONFIG_BYTES = 1 << 20  # a configuration is a few kB; anything this large is a mistake
EXIT_CONFIG = 78  # EX_CONFIG (sysexits.h): systemd's RestartPreventExitStatus stops retrying


def system_zone(environ: Mapping[str, str] | None = None, etc: Path = Path("/etc")) -> str:
    """The system's time zone name (TZ, /etc/timezone, the /etc/localtime link), else UTC."""
    environ = os.environ if environ is None else environ
    candidates = [environ.get("TZ", "").lstrip(":")]
    with contextlib.suppress(OSError):
        candidates.append((etc / "timezone").read_text(encoding="utf-8").strip())
    with contextlib.suppress(OSError):
        link = str((etc / "localtime").readlink())
        if "zoneinfo/" in link:
            candidates.append(link.split("zoneinfo/", 1)[1])
    for name in candidates:
        if name and not name.startswith("/"):
            try:
                ZoneInfo(name)
            except (ZoneInfoNotFoundError, ValueError):
                continue
            return name
    return "UTC"


@dataclass(frozen=True, slots=True)
class DeviceConfig:
    """[device]: this device and its decision settings."""

    name: str
    store: str = "edge.db"  # relative paths are relative to the configuration file
    language: str = "en"  # display language: en, de or fr
    timezone: str = ""  # where the device is, e.g. "Europe/Berlin"; empty: the system's zone
    clock_skew_seconds: int = 120  # tolerance at both ends of validity windows
    repeat_window_ms: int = 1500  # the same code again at the same lane within this: one read

    def __post_init__(self) -> None:
        if not self.name.strip():
            raise ValueError("name must not be empty")
        if len(self.name) > MAX_NAME or not self.name.isprintable():
            raise ValueError(f"name must be at most {MAX_NAME} printable characters")
        if self.language not in LANGUAGES:
            raise ValueError(f"language must be one of {', '.join(LANGUAGES)}")
        if self.timezone:
            try:
                ZoneInfo(self.timezone)
            except (ZoneInfoNotFoundError, ValueError) as err:
                raise ValueError(
                    f'timezone: {self.timezone!r} is not a time zone name such as "Europe/Berlin"'
                ) from err
        if not 0 <= self.clock_skew_seconds <= 3600:
            raise ValueError("clock_skew_seconds must be 0..3600")
        if not 0 <= self.repeat_window_ms <= 60_000:
            raise ValueError("repeat_window_ms must be 0..60000")


@dataclass(frozen=True, slots=True)
class KeyConfig:
    """[[keys]]: a public key of the central system that codes are signed with."""

    id: int
    public: str  # base64 of the 32-byte Ed25519 public key
    retired: bool = False

    def __post_init__(self) -> None:
        if not 0 <= self.id <= 0xFFFF:
            raise ValueError("id must be 0..65535")
        try:
            raw = base64.b64decode(self.public, validate=True)
        except binascii.Error:
            raw = b""
        if len(raw) != 32:
            raise ValueError("public must be the base64 of a 32-byte Ed25519 public key")

    @property
    def public_bytes(self) -> bytes:
        """The raw public key."""
        return base64.b64decode(self.public)


@dataclass(frozen=True, slots=True)
class DriverConfig:
    """A [[scanners]] or [[actuators]] entry: a named device of a registered type."""

    name: str
    type: str
    settings: Any  # an instance of the type's settings dataclass


@dataclass(frozen=True, slots=True)
class Config:
    """The whole configuration."""

    path: Path
    device: DeviceConfig
    keys: tuple[KeyConfig, ...]
    scanners: tuple[DriverConfig, ...]
    actuators: tuple[DriverConfig, ...]
    lanes: tuple[LaneConfig, ...]
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    pretix: PretixConfig | None = None
    printers: tuple[DriverConfig, ...] = ()  # [[printers]]: ticket and card printers
    templates: tuple[Template, ...] = ()  # [[templates]]: ticket and card layouts
    sync: SyncConfig | None = None
    counter: CounterConfig | None = None

    @property
    def zone_name(self) -> str:
        """The device's time zone: [device] timezone, or the system's, or UTC."""
        return self.device.timezone or system_zone()

    @property
    def store_path(self) -> Path:
        """The store file, resolved against the configuration's directory."""
        return self.file(self.device.store)

    def file(self, name: str) -> Path:
        """A file the configuration names (relative to the configuration's directory)."""
        return self.path.parent / name

    def rules(self, lane: LaneConfig) -> GateRules:
        """The decision rules of a lane (pretix lanes: pretix's tolerance, none by default)."""
        seconds = self.device.clock_skew_seconds
        if self.pretix is not None:
            seconds = self.pretix.clock_skew_seconds
        return lane.rules(timedelta(seconds=seconds))


def _drivers(
    tables: Any, section: str, registry: dict[str, DriverType[Any]], path: str
) -> tuple[DriverConfig, ...]:
    if not isinstance(tables, list):
        raise ConfigError(f"must be an array of tables ([[{section}]])", path=path, key=section)
    out = []
    for i, table in enumerate(tables):
        where = f"{section}[{i}]"
        if not isinstance(table, dict):
            raise ConfigError("must be a table", path=path, key=where)
        settings = dict(table)
        name = settings.pop("name", None)
        kind = settings.pop("type", None)
        if not isinstance(name, str) or not name:
            raise ConfigError("needs a name (a non-empty string)", path=path, key=f"{where}.name")
        if not isinstance(kind, str) or kind not in registry:
            allowed = ", ".join(f"{k} ({v.summary})" for k, v in registry.items())
            raise ConfigError(f"type {kind!r} is unknown; allowed: {allowed}", path=path, key=where)
        driver = registry[kind]
        out.append(DriverConfig(name, kind, build(driver.settings, settings, where, path)))
    return tuple(out)


def _list(document: dict[str, Any], section: str, path: str) -> list[Any]:
    value = document.get(section, [])
    if not isinstance(value, list):
        raise ConfigError(f"must be an array of tables ([[{section}]])", path=path, key=section)
    return value


def parse(text: str, path: Path) -> Config:
    """A validated configuration from TOML text."""
    where = str(path)
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"not valid TOML: {err}", path=where) from err
    allowed = {
        "device",
        "keys",
        "scanners",
        "actuators",
        "lanes",
        "metrics",
        "pretix",
        "sync",
        "printers",
        "templates",
        "counter",
    }
    unknown = sorted(set(document) - allowed)
    if unknown:
        raise ConfigError(
            f"unknown section {unknown[0]!r}; allowed: {', '.join(sorted(allowed))}", path=where
        )
    if "device" not in document:
        raise ConfigError("the [device] section is required", path=where)
    device = build(DeviceConfig, document["device"], "device", where)
    keys = tuple(
        build(KeyConfig, t, f"keys[{i}]", where)
        for i, t in enumerate(_list(document, "keys", where))
    )
    scanners = _drivers(document.get("scanners", []), "scanners", SCANNERS, where)
    actuators = _drivers(document.get("actuators", []), "actuators", ACTUATORS, where)
    lanes = tuple(
        build(LaneConfig, t, f"lanes[{i}]", where)
        for i, t in enumerate(_list(document, "lanes", where))
    )
    _check_references(where, keys, scanners, actuators, lanes)
    metrics = build(MetricsConfig, document.get("metrics", {}), "metrics", where)
    pretix = (
        build(PretixConfig, document["pretix"], "pretix", where) if "pretix" in document else None
    )
    printers = _drivers(document.get("printers", []), "printers", PRINTERS, where)
    tables = _list(document, "templates", where)
    templates: tuple[Template, ...] = ()
    if tables:
        from edge.counter.templates import Template  # noqa: PLC0415 - see TYPE_CHECKING above

        templates = tuple(
            Template.from_table(t, f"templates[{i}]", where) for i, t in enumerate(tables)
        )
    _unique([p.name for p in printers], "printer", where)
    _unique([t.name for t in templates], "template", where)
    sync = build(SyncConfig, document["sync"], "sync", where) if "sync" in document else None
    if sync is not None and pretix is not None:
        raise ConfigError(
            "a device has one central system: [sync] (edge-central) or [pretix], not both",
            path=where,
            key="pretix",
        )
    if sync is not None and not keys:
        # Every envelope from the central system (bootstrap, pushes, changes) is checked
        # against these keys; without one, each is rejected and sync retries forever.
        raise ConfigError(
            "[sync] needs the central system's public keys as [[keys]] (id and public, from "
            "`edge-central key list`): everything it sends is signed",
            path=where,
            key="keys",
        )
    counter = None
    if "counter" in document:
        counter = build(CounterConfig, document["counter"], "counter", where)
        for key, kind in (("card_template", "card"), ("ticket_template", "ticket")):
            name = getattr(counter, key)
            template = {t.name: t for t in templates}.get(name)
            if name and (template is None or template.kind.value != kind):
                raise ConfigError(
                    f"{name!r} is not a {kind} template in [[templates]]",
                    path=where,
                    key=f"counter.{key}",
                )
        if counter.nfc_reader:
            reader = {d.name: d for d in scanners}.get(counter.nfc_reader)
            if reader is None or reader.type != "pcsc":
                raise ConfigError(
                    f'{counter.nfc_reader!r} is not a [[scanners]] entry of type "pcsc"',
                    path=where,
                    key="counter.nfc_reader",
                )
            if any(counter.nfc_reader in (*lane.entry, *lane.exit) for lane in lanes):
                raise ConfigError(
                    f"{counter.nfc_reader!r} feeds a lane; the desk's reader must be its own",
                    path=where,
                    key="counter.nfc_reader",
                )
    return Config(
        path,
        device,
        keys,
        scanners,
        actuators,
        lanes,
        metrics,
        pretix=pretix,
        printers=printers,
        templates=templates,
        sync=sync,
        counter=counter,
    )


def _unique(names: list[str], what: str, path: str) -> set[str]:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ConfigError(f"{what} {name!r} is defined twice", path=path)
        seen.add(name)
    return seen


def _check_references(
    path: str,
    keys: tuple[KeyConfig, ...],
    scanners: tuple[DriverConfig, ...],
    actuators: tuple[DriverConfig, ...],
    lanes: tuple[LaneConfig, ...],
) -> None:
    _unique([str(k.id) for k in keys], "key id", path)
    scanner_names = _unique([s.name for s in scanners], "scanner", path)
    actuator_names = _unique([a.name for a in actuators], "actuator", path)
    _unique([lane.name for lane in lanes], "lane", path)
    fed: dict[str, str] = {}
    for i, lane in enumerate(lanes):
        if lane.actuator not in actuator_names:
            raise ConfigError(
                f"actuator {lane.actuator!r} is not defined in [[actuators]]",
                path=path,
                key=f"lanes[{i}].actuator",
            )
        for side in ("entry", "exit"):
            for name in getattr(lane, side):
                if name not in scanner_names:
                    raise ConfigError(
                        f"scanner {name!r} is not defined in [[scanners]]",
                        path=path,
                        key=f"lanes[{i}].{side}",
                    )
                if name in fed:
                    raise ConfigError(
                        f"scanner {name!r} already feeds lane {fed[name]!r}",
                        path=path,
                        key=f"lanes[{i}].{side}",
                    )
                fed[name] = lane.name


def check_paths(config: Config) -> None:
    """Refuse paths that would stop the daemon: see check_store_directory, and a `lines`
    scanner on a regular file (read once to its end, then the lane stops; a daemon reads a
    FIFO, which never ends, or standard input)."""
    check_store_directory(config)
    for i, spec in enumerate(config.scanners):
        path = getattr(spec.settings, "path", "-")
        if spec.type == "lines" and path != "-" and Path(path).is_file():
            raise ConfigError(
                f"{path} is a regular file: a lines scanner would read it once and stop the "
                f"lane; make it a FIFO (mkfifo {path}) or use '-' for standard input",
                path=str(config.path),
                key=f"scanners[{i}].path",
            )


def check_store_directory(config: Config) -> None:
    """Refuse a store whose directory is missing (the package's unit creates /var/lib/edge)."""
    directory = config.store_path.parent
    if not directory.is_dir():
        raise ConfigError(
            f"the store's directory {directory} does not exist; create it (owned by the user "
            "the daemon runs as) or change store",
            path=str(config.path),
            key="device.store",
        )


def load(path: str | Path) -> Config:
    """Read and validate a configuration file."""
    path = Path(path)
    try:
        with path.open("rb") as file:
            data = file.read(MAX_CONFIG_BYTES + 1)
    except OSError as err:
        raise ConfigError(f"cannot read: {err.strerror}", path=str(path)) from err
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"larger than {MAX_CONFIG_BYTES} bytes", path=str(path))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"not UTF-8 (byte {err.start})", path=str(path)) from err
    return parse(text, path)
