"""The pretix connector as a daemon service: the gate's resolver and the sync loop."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import aiohttp

from edge.core.errors import ConfigError
from edge.store.database import Store
from sync.pretix.client import PretixClient, PretixSettings
from sync.pretix.connector import PretixConnector, PretixSyncState
from sync.pretix.resolver import PretixResolver
from sync.pretix.rules import RulesError
from sync.pretix.settings import PretixConfig
from sync.pretix.worker import PullWorker

_LOGGER = logging.getLogger(__name__)

MAX_TOKEN_BYTES = 4096  # pretix tokens are 64 characters


def check_rules(resolver: PretixResolver, lanes: Sequence[str], *, store: str) -> None:
    """ConfigError naming the lanes and what the synced list's rules use that this gate
    cannot evaluate as pretix does (`edge config check`, the daemon's start)."""
    try:
        resolver.check_rules()
    except RulesError as err:
        raise ConfigError(
            f"pretix lanes {', '.join(lanes)} cannot decide as pretix: {err}; change the "
            "list's rules in pretix or scan with another list",
            path=store,
            key="pretix.checkin_list",
        ) from err


def read_token(path: Path) -> str:
    """The API token from its file; ConfigError naming the file if it is missing or odd."""
    try:
        with path.open("rb") as file:
            raw = file.read(MAX_TOKEN_BYTES + 1)
    except OSError as err:
        raise ConfigError(f"cannot read the token: {err.strerror}", path=str(path)) from err
    try:
        token = raw.decode("ascii").strip()
    except UnicodeDecodeError:
        token = ""
    if not token or len(raw) > MAX_TOKEN_BYTES or not token.isalnum():
        raise ConfigError("must hold one pretix API or device token", path=str(path))
    return token


class PretixService:
    """Decides pretix tickets on the scan path and keeps the store in sync with pretix."""

    def __init__(
        self,
        store: Store,
        settings: PretixSettings,
        *,
        interval: float,
        admit_unsynced_signed: bool = True,
        ignore_unpaid_lanes: frozenset[str] = frozenset(),
    ) -> None:
        self.settings = settings
        self.interval = interval
        self._ignore_unpaid_lanes = ignore_unpaid_lanes
        self._store = store
        self.resolver = PretixResolver(store, admit_unsynced_signed=admit_unsynced_signed)
        self.state = PretixSyncState()

    @classmethod
    def from_settings(
        cls,
        section: PretixConfig,
        store: Store,
        *,
        token_file: Path,
        ignore_unpaid_lanes: frozenset[str] = frozenset(),
    ) -> PretixService:
        """The service the [pretix] section describes; `token_file` is its resolved token_file."""
        settings = PretixSettings(
            url=section.url,
            organizer=section.organizer,
            event=section.event,
            checkin_list=section.checkin_list,
            token=read_token(token_file),
            device=section.device_token,
        )
        return cls(
            store,
            settings,
            interval=section.sync_interval_seconds,
            admit_unsynced_signed=section.admit_unsynced_signed,
            ignore_unpaid_lanes=ignore_unpaid_lanes,
        )

    async def run(self) -> None:
        """Pull and upload until cancelled."""
        _LOGGER.info(
            "pretix: syncing %s/%s list %d from %s every %.0f s",
            self.settings.organizer,
            self.settings.event,
            self.settings.checkin_list,
            self.settings.url,
            self.interval,
        )
        # Pulls parse and apply every order of the event: in a worker process, so scans
        # never wait for them (sync.pretix.worker). Uploads stay here, row by row.
        worker = PullWorker(self._store.path)
        try:
            async with aiohttp.ClientSession() as session:
                client = PretixClient(self.settings, session=session)
                connector = PretixConnector(
                    self._store,
                    client,
                    self.resolver,
                    state=self.state,
                    ignore_unpaid_lanes=self._ignore_unpaid_lanes,
                    puller=worker,
                )
                await connector.run(self.interval)
        finally:
            await worker.close()
