"""The key-value store, through this invocation's transaction.

Reads see one snapshot of the store plus this invocation's own writes;
writes are buffered and commit when ``handle`` returns. Each kind of value
has its own operations; one used on a key of another kind raises
``StoreError("wrong_type")``.
"""

from typing import Dict, List, Optional, Set

from componentize_py_types import Err
from wit_world.imports import store as _wit

from squall_sdk._bytes import Bytes, b
from squall_sdk.errors import store_error


def _run(f, *args):
    try:
        return f(*args)
    except Err as e:
        raise store_error(e.value) from None


# Registers: bytes, last writer wins.


def get(key: Bytes) -> Optional[bytes]:
    """The register's bytes (a counter reads as its digits), or None."""
    return _run(_wit.get, b(key))


def put(key: Bytes, value: Bytes) -> None:
    """Replaces the key, of any kind, with a register holding ``value``."""
    _run(_wit.put, b(key), b(value))


def delete(key: Bytes) -> bool:
    """Removes the key, of any kind; True if it was there."""
    return _run(_wit.delete, b(key))


# Counters: increments from everywhere add up.


def increment(key: Bytes, by: int = 1) -> int:
    """Adds ``by`` (may be negative); the counter as this invocation sees it."""
    return _run(_wit.increment, b(key), int(by))


incr = increment


def counter(key: Bytes) -> int:
    """The counter's value (0 when the key is not there)."""
    return _run(_wit.counter, b(key))


# Sets: an add wins over a concurrent remove.


def set_add(key: Bytes, *members: Bytes) -> int:
    """Adds members; how many were not there."""
    return _run(_wit.set_add, b(key), [b(m) for m in members])


def set_remove(key: Bytes, *members: Bytes) -> int:
    """Removes members; how many were there."""
    return _run(_wit.set_remove, b(key), [b(m) for m in members])


def set_members(key: Bytes) -> Set[bytes]:
    return set(_run(_wit.set_members, b(key)))


# Maps: fields, each last writer wins.


def map_get(key: Bytes, field: Bytes) -> Optional[bytes]:
    return _run(_wit.map_get, b(key), b(field))


def map_put(key: Bytes, field: Bytes, value: Bytes) -> None:
    _run(_wit.map_put, b(key), b(field), b(value))


def map_remove(key: Bytes, field: Bytes) -> bool:
    """Removes a field; True if it was there."""
    return _run(_wit.map_remove, b(key), b(field))


def map_entries(key: Bytes) -> Dict[bytes, bytes]:
    return dict(_run(_wit.map_entries, b(key)))


def scan(prefix: Bytes = b"", limit: int = 1000) -> List[bytes]:
    """Up to ``limit`` keys that start with ``prefix``, in no order."""
    return _run(_wit.scan, b(prefix), int(limit))
