"""Frozen dataclasses from TOML tables: every key checked, every error naming it.

Public (like edge.core.errors): the configuration loader and the drivers' own data (print
templates) use it, so drivers never see an unchecked value.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import types
import typing
from typing import Any, TypeVar

from edge.core.errors import ConfigError

T = TypeVar("T")

MAX_NAME = 200  # device and lane names: sent to the central system with every upload


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is tuple:
        return f"a list of {_type_name(typing.get_args(tp)[0])}s"
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp) if a is not type(None))
    return {str: "string", int: "integer", float: "number", bool: "boolean"}.get(tp, str(tp))


def _value(tp: Any, value: Any, key: str, path: str) -> Any:
    """`value` converted to `tp`, or ConfigError."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(tp) if a is not type(None)]
        return _value(options[0], value, key, path)
    if origin is tuple:
        if not isinstance(value, list):
            raise ConfigError(f"must be {_type_name(tp)}", path=path, key=key)
        (item,) = typing.get_args(tp)[:1]
        return tuple(_value(item, v, f"{key}[{i}]", path) for i, v in enumerate(value))
    if tp is bool:
        ok = isinstance(value, bool)
    elif tp is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    else:
        ok = isinstance(value, tp) and not isinstance(value, bool)
    if not ok:
        raise ConfigError(
            f"must be {_type_name(tp)}, not {type(value).__name__} {value!r}", path=path, key=key
        )
    return float(value) if tp is float else value


def build(cls: type[T], table: Any, where: str, path: str) -> T:
    """An instance of the dataclass `cls` from a TOML table; every error names the key."""
    if not isinstance(table, dict):
        raise ConfigError("must be a table", path=path, key=where)
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(table) - set(fields))
    if unknown:
        raise ConfigError(
            f"unknown key {unknown[0]!r}; allowed: {', '.join(fields)}", path=path, key=where
        )
    values = {}
    for name, f in fields.items():
        key = f"{where}.{name}"
        if name in table:
            values[name] = _value(hints[name], table[name], key, path)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError("is required", path=path, key=key)
    try:
        return cls(**values)
    except ValueError as err:
        raise ConfigError(str(err), path=path, key=where) from err


def check_listener(address: str, port: int, prefix: str = "") -> None:
    """ValueError unless `address` is an IP address and `port` 0..65535 (keys `{prefix}address`)."""
    try:
        ipaddress.ip_address(address)
    except ValueError:
        raise ValueError(
            f"{prefix}address must be an IP address such as 127.0.0.1 or ::1, not {address!r}"
        ) from None
    if not 0 <= port <= 65535:
        raise ValueError(f"{prefix}port must be 0..65535")
