"""HTTP access to pretix's REST API (/api/v1) with a team or device token."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp

from edge.core.errors import SyncError

_LOGGER = logging.getLogger(__name__)

REQUEST_TIMEOUT_SECONDS = 30.0  # one request; pretix answers a page of 50 in well under that
MAX_RESPONSE_BYTES = 16 << 20  # a page of 50 positions is ~100 kB
PAGE_SIZE = 50  # pretix's max_page_size
MAX_PAGES = 100_000  # 5 million rows: more is a loop, not an event
# 4xx answers that say "not now" rather than "no": timeout, conflict, locked, too early,
# too many requests. They raise like a 5xx, so no caller takes them as pretix's answer.
TRANSIENT_STATUSES = frozenset({408, 409, 423, 425, 429})


@dataclass(frozen=True, slots=True)
class PretixSettings:
    """Where the event lives and how to authenticate."""

    url: str  # the pretix server, e.g. https://pretix.example.org (without /api/v1)
    organizer: str  # organizer slug
    event: str  # event slug
    checkin_list: int  # id of the check-in list this gate scans for
    token: str  # API token (team) or device token
    device: bool = False  # True: a device token ("Device" scheme), else a team token

    @property
    def api(self) -> str:
        """The organizer's API root."""
        return f"{self.url.rstrip('/')}/api/v1/organizers/{quote(self.organizer, safe='')}"

    @property
    def event_api(self) -> str:
        """The event's API root."""
        return f"{self.api}/events/{quote(self.event, safe='')}"


async def _body(response: aiohttp.ClientResponse) -> bytes:
    """The whole answer, or MAX_RESPONSE_BYTES + 1 bytes of it if it is longer.

    StreamReader.read(n) returns what has arrived so far, not n bytes: read to the end.
    """
    chunks: list[bytes] = []
    size = 0
    while size <= MAX_RESPONSE_BYTES:
        chunk = await response.content.read(MAX_RESPONSE_BYTES + 1 - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


class PretixClient:
    """GET, paged GET and POST against one pretix server; errors become SyncError."""

    def __init__(self, settings: PretixSettings, *, session: aiohttp.ClientSession) -> None:
        self.settings = settings
        self._session = session
        scheme = "Device" if settings.device else "Token"
        self._headers = {
            "Authorization": f"{scheme} {settings.token}",
            "Accept": "application/json",
        }
        self._timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_SECONDS)

    async def _request(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, str] | None,
        body: Any,
        missing_ok: bool = False,
    ) -> tuple[int, Any]:
        try:
            async with self._session.request(
                method,
                url,
                params=params,
                json=body,
                headers=self._headers,
                timeout=self._timeout,
                allow_redirects=False,
            ) as response:
                raw = await _body(response)
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as err:
            raise SyncError(f"pretix {method} {url}: {type(err).__name__}: {err}") from err
        if len(raw) > MAX_RESPONSE_BYTES:
            raise SyncError(f"pretix {method} {url}: answer larger than {MAX_RESPONSE_BYTES} bytes")
        if status in (401, 403):
            raise SyncError(
                f"pretix {method} {url}: {status}: the token is not accepted or lacks a "
                "permission (needs event.orders:read, and check-in for uploads)"
            )
        if status in (404, 410) and missing_ok:
            return status, None
        if status >= 500 or status in TRANSIENT_STATUSES or (status == 404 and method == "GET"):
            # Not pretix's answer to the request: the request is to be made again later.
            raise SyncError(f"pretix {method} {url}: HTTP {status}")
        try:
            data = json.loads(raw) if raw else None
        except ValueError as err:
            raise SyncError(f"pretix {method} {url}: HTTP {status}, not JSON: {err}") from err
        return status, data

    async def get(self, url: str, params: Mapping[str, str] | None = None) -> dict[str, Any]:
        """A JSON object from a GET; SyncError for anything else."""
        status, data = await self._request("GET", url, params=params, body=None)
        if status != 200 or not isinstance(data, dict):
            raise SyncError(f"pretix GET {url}: HTTP {status}: {str(data)[:200]}")
        return data

    async def find(self, url: str) -> dict[str, Any] | None:
        """A JSON object from a GET, or None if pretix answers 404 (it does not exist)."""
        status, data = await self._request("GET", url, params=None, body=None, missing_ok=True)
        if status == 404:
            return None
        if status != 200 or not isinstance(data, dict):
            raise SyncError(f"pretix GET {url}: HTTP {status}: {str(data)[:200]}")
        return data

    async def pages(
        self, url: str, params: Mapping[str, str] | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        """Every result of a paged list, page by page (by number: pretix's `next` links
        carry its configured URL, which need not be the one this gate reaches it by)."""
        for page in range(1, MAX_PAGES + 1):
            data = await self.get(
                url, {**(params or {}), "page": str(page), "page_size": str(PAGE_SIZE)}
            )
            results = data.get("results")
            if not isinstance(results, list):
                raise SyncError(f"pretix GET {url}: a list answer without 'results'")
            for item in results:
                if not isinstance(item, dict):
                    raise SyncError(f"pretix GET {url}: a result is not an object")
                yield item
            if not data.get("next"):
                return
        raise SyncError(f"pretix GET {url}: more than {MAX_PAGES} pages")

    async def post(self, url: str, body: Mapping[str, Any]) -> tuple[int, dict[str, Any]]:
        """HTTP status and JSON object of a POST; 4xx answers are returned, not raised."""
        status, data = await self._request("POST", url, params=None, body=dict(body))
        if not isinstance(data, dict):
            raise SyncError(f"pretix POST {url}: HTTP {status}, not a JSON object")
        return status, data
