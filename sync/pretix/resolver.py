"""The scan path for pretix tickets: secret → edge code and facts, decided by edge.core.decide.

A pretix position becomes an edge credential: its id is the position id when a sync has
seen the secret, else a negative id derived from the secret's hash (a ticket sold after the
last sync: pretix_sig1 carries what the gate needs). Product is pretix's item, event is the
subevent (event series) or the event. The check-in list narrows the lane's rules (its
products and subevent) and sets the entry policy. Synchronous: one or two point queries on
the store's reader and at most two Ed25519 verifications, no thread hop.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edge.core.codes import (
    MAX_PLAIN_LENGTH,
    Claims,
    Code,
    EntryPolicy,
    Kind,
    PlainCode,
    SignedCode,
    Validity,
    scan_text,
)
from edge.core.decide import GateRules
from edge.core.errors import CodeError, SyncError
from edge.core.facts import Credential, Facts, Revocation, TrustedKey
from edge.store.database import Store
from sync.pretix.secrets import Sig1Secret, find_key, looks_sig1, parse_sig1, secret_hash

KEYS_CURSOR = "pretix:keys"  # JSON list of base64 raw Ed25519 keys: the event's valid_keys
LIST_CURSOR = "pretix:list"  # JSON of ListState
PRETIX_KEY_ID = 0  # pretix keys have no id; TrustedKey needs one for display only
# Open ends of a validity window pretix left open (Validity has both ends).
OPEN_START = datetime(1970, 1, 1, tzinfo=UTC)
OPEN_END = datetime(9999, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class ListState:
    """What the gate keeps of the event and its check-in list."""

    list_id: int
    products: frozenset[int] | None  # None: all_products
    subevent: int | None  # the list is limited to this date of a series
    include_pending: bool  # pending (unpaid) orders admit
    multiple_entries: bool  # allow_multiple_entries

    def to_json(self) -> str:
        """The cursor text."""
        data = dataclasses.asdict(self)
        data["products"] = sorted(self.products) if self.products is not None else None
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ListState:
        """Parse the cursor text; SyncError if it is damaged."""
        try:
            data: dict[str, Any] = json.loads(text)
            products = data["products"]
            return cls(
                list_id=int(data["list_id"]),
                products=frozenset(int(p) for p in products) if products is not None else None,
                subevent=int(data["subevent"]) if data["subevent"] is not None else None,
                include_pending=bool(data["include_pending"]),
                multiple_entries=bool(data["multiple_entries"]),
            )
        except (ValueError, KeyError, TypeError) as err:
            raise SyncError(f"stored pretix check-in list state is damaged: {err}") from err

    @property
    def policy(self) -> EntryPolicy:
        """The entry policy of every ticket on this list."""
        # pretix's allow_entry_after_exit is not modelled: without multiple entries, one entry.
        return EntryPolicy.unlimited() if self.multiple_entries else EntryPolicy.single()


def keys_to_json(keys: list[bytes]) -> str:
    """The keys cursor text for raw 32-byte keys."""
    return json.dumps([base64.b64encode(k).decode("ascii") for k in keys])


def keys_from_json(text: str) -> list[Ed25519PublicKey]:
    """Parse the keys cursor text; SyncError if it is damaged."""
    try:
        return [
            Ed25519PublicKey.from_public_bytes(base64.b64decode(k, validate=True))
            for k in json.loads(text)
        ]
    except (ValueError, TypeError, binascii.Error) as err:
        raise SyncError(f"stored pretix keys are damaged: {err}") from err


def unknown_position_id(code_hash: bytes) -> int:
    """The credential id of a signed ticket whose position the gate has not synced yet.

    Negative, so it never meets a pretix position id; from the secret, so every scan of
    the same secret finds the same passages.
    """
    return -(int.from_bytes(code_hash[:8], "big") >> 1) - 1


def validity(valid_from: datetime | None, valid_until: datetime | None) -> Validity | None:
    """An edge validity window from pretix's optional ends (None: no window)."""
    if valid_from is None and valid_until is None:
        return None
    return Validity(valid_from or OPEN_START, valid_until or OPEN_END)


class PretixResolver:
    """The Gate's resolver for a device whose central system is pretix."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._keys: list[TrustedKey] = []
        self._state: ListState | None = None
        self._rules: dict[GateRules, GateRules] = {}
        self.reload()

    @property
    def state(self) -> ListState | None:
        """The synced check-in list, or None before the first sync."""
        return self._state

    def reload(self) -> None:
        """Read keys and check-in list from the store (after every sync)."""
        keys_text = self._store.cursor(KEYS_CURSOR)
        list_text = self._store.cursor(LIST_CURSOR)
        keys = keys_from_json(keys_text) if keys_text else []
        self._keys = [TrustedKey(PRETIX_KEY_ID, key) for key in keys]
        self._state = ListState.from_json(list_text) if list_text else None
        self._rules = {}

    def narrowed(self, rules: GateRules) -> GateRules:
        """The lane's rules narrowed to what the check-in list admits."""
        cached = self._rules.get(rules)
        if cached is not None:
            return cached
        state = self._state
        out = rules
        if state is not None:
            if state.products is not None:
                products = state.products
                if rules.products is not None:
                    products = products & rules.products
                out = dataclasses.replace(out, products=products)
            if state.subevent is not None:
                events = frozenset({state.subevent})
                if rules.events is not None:
                    events = events & rules.events
                out = dataclasses.replace(out, events=events)
        self._rules[rules] = out
        return out

    def __call__(self, data: bytes, rules: GateRules) -> tuple[Code, Facts, GateRules]:
        """The code, facts and rules for scanner bytes; CodeError if they are no secret."""
        text = scan_text(data)
        code: Code
        if looks_sig1(text):
            code, facts = self._signed(parse_sig1(text))
        else:
            if len(text) > MAX_PLAIN_LENGTH:
                raise CodeError(f"pretix secret of {len(text)} characters is not a ticket")
            code = PlainCode(secret_hash(text))
            facts = self._store.facts(code)
        if facts.code_revoked is None and self._store.code_blocked(code.hash):
            # pretix's blocked secrets (a block can be lifted) show as revoked.
            facts = dataclasses.replace(facts, code_revoked=Revocation.REVOKED)
        return code, facts, self.narrowed(rules)

    def _signed(self, secret: Sig1Secret) -> tuple[SignedCode, Facts]:
        state = self._state
        ticket = secret.ticket
        facts = self._store.facts(PlainCode(secret.hash))
        synced = facts.credential is not None
        if facts.credential is not None:
            cid = facts.credential.credential_id
        else:
            cid = unknown_position_id(secret.hash)
        claims = Claims(
            key_id=PRETIX_KEY_ID,
            credential_id=cid,
            kind=Kind.TICKET,
            event_id=ticket.subevent,  # 0 for a single event (pretix's API has no event id)
            product_id=ticket.item,
            policy=state.policy if state else EntryPolicy.single(),
            validity=validity(ticket.valid_from, ticket.valid_until),
        )
        code = SignedCode(claims, secret.payload, secret.signature, secret.hash)
        if not synced:
            facts = self._store.facts(code)
        return code, dataclasses.replace(facts, key=self._key(secret))

    def _key(self, secret: Sig1Secret) -> TrustedKey | None:
        """The key decide() verifies with: the one that signed, else one that fails."""
        if len(self._keys) <= 1:
            return self._keys[0] if self._keys else None
        found = find_key(secret, [k.public_key for k in self._keys])
        return next((k for k in self._keys if k.public_key is found), self._keys[0])


def position_credential(
    position_id: int,
    *,
    item: int,
    event: int,
    valid_from: datetime | None,
    valid_until: datetime | None,
    paid: bool,
    state: ListState,
) -> Credential:
    """The edge credential of a synced pretix position."""
    return Credential(
        credential_id=position_id,
        kind=Kind.TICKET,
        event_id=event,
        product_id=item,
        policy=state.policy,
        validity=validity(valid_from, valid_until),
        paid=paid,
    )
