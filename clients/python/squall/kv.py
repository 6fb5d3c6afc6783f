"""The store over HTTP: registers, counters, sets and maps, each merged as
its lattice (a counter's increments add up, a set's add wins over a
concurrent remove, a map's fields are each last-writer-wins)."""

import json
from typing import Dict, Iterator, List, Optional, Set, Union

from squall._http import Http, quote
from squall.errors import SquallError, from_response

Key = Union[str, bytes]
Value = Union[str, bytes, int]

#: What ``get`` answers for a key that is not a register.
Structured = Union[int, Set[str], Dict[str, str], List[str], Dict[str, float]]


def _key(k: Key) -> str:
    return quote(k)


def _bytes(v: Value) -> bytes:
    if isinstance(v, bytes):
        return v
    if isinstance(v, str):
        return v.encode()
    if isinstance(v, int) and not isinstance(v, bool):
        return str(v).encode()
    raise TypeError(f"a value is bytes, str or int, not {type(v).__name__}")


class KV:
    """``client.kv``: keys of the client's namespace."""

    def __init__(self, http: Http) -> None:
        self._http = http

    # Any kind of value.

    def get(self, key: Key) -> Union[bytes, Structured, None]:
        """A register's bytes; a counter's int, a set's members (a ``set``),
        a map's fields (a ``dict``), a list's items; None if there is no key."""
        status, head, body = self._http.request("GET", f"/v1/kv/{_key(key)}")
        if status == 404:
            return None
        if status >= 400:
            raise from_response(status, body)
        kind = head.get("x-squall-type", "register")
        if kind == "register":
            return body
        v = json.loads(body)
        if v is None:
            return None
        if v["type"] in ("counter", "max"):
            return int(v["value"])
        if v["type"] == "set":
            return set(v["members"])
        if v["type"] == "map":
            return dict(v["fields"])
        if v["type"] == "list":
            return list(v["items"])
        if v["type"] == "zset":
            return {m: float(s) for m, s in v["members"]}
        return v

    def put(self, key: Key, value: Value, ttl: Optional[int] = None) -> None:
        """Makes the key a register holding ``value`` (a str as UTF-8, an
        int as its digits), expiring after ``ttl`` seconds if given."""
        q = f"?ttl={int(ttl)}" if ttl is not None else ""
        self._http.ok("PUT", f"/v1/kv/{_key(key)}{q}", _bytes(value))

    def delete(self, key: Key) -> bool:
        """Removes the key, of any kind; True if it was there."""
        status, _, body = self._http.request("DELETE", f"/v1/kv/{_key(key)}")
        if status == 404:
            return False
        if status >= 400:
            raise from_response(status, body)
        return True

    def scan(self, prefix: Key = "", page: int = 1000) -> Iterator[str]:
        """Every key starting with ``prefix``, page by page, in no order."""
        cursor = ""
        p = quote(prefix)
        while True:
            _, _, body = self._http.ok("GET", f"/v1/kv?prefix={p}&limit={int(page)}&cursor={quote(cursor)}")
            r = json.loads(body)
            yield from r["keys"]
            cursor = r.get("cursor") or ""
            if r.get("done", True):
                return

    # Lattices.

    def _update(self, key: Key, update: dict) -> int:
        _, _, body = self._http.ok("POST", f"/v1/kv/{_key(key)}", json.dumps(update).encode())
        (n,) = json.loads(body).values()
        return int(n)

    def incr(self, key: Key, by: int = 1) -> int:
        """Adds ``by`` to the counter (may be negative); its new value."""
        return self._update(key, {"incr": int(by)})

    def counter(self, key: Key) -> int:
        """The counter's value (0 if there is no key)."""
        v = self.get(key)
        if v is None:
            return 0
        if isinstance(v, int):
            return v
        if isinstance(v, bytes):
            try:
                return int(v)
            except ValueError:
                pass
        raise SquallError("wrong_type", f"{key!r} is not a counter", 409)

    def sadd(self, key: Key, *members: str) -> int:
        """Adds members to the set; how many were not there."""
        return self._update(key, {"sadd": list(members)})

    def srem(self, key: Key, *members: str) -> int:
        """Removes members; how many were there."""
        return self._update(key, {"srem": list(members)})

    def smembers(self, key: Key) -> Set[str]:
        v = self.get(key)
        if v is None:
            return set()
        if not isinstance(v, set):
            raise SquallError("wrong_type", f"{key!r} is not a set", 409)
        return v

    def hset(self, key: Key, fields: Optional[Dict[str, str]] = None, **more: str) -> int:
        """Sets fields of the map; how many were new."""
        f = dict(fields or {}, **more)
        return self._update(key, {"hset": {k: v.decode() if isinstance(v, bytes) else str(v) for k, v in f.items()}})

    def hdel(self, key: Key, *fields: str) -> int:
        """Removes fields; how many were there."""
        return self._update(key, {"hdel": list(fields)})

    def hgetall(self, key: Key) -> Dict[str, str]:
        v = self.get(key)
        if v is None:
            return {}
        if not isinstance(v, dict):
            raise SquallError("wrong_type", f"{key!r} is not a map", 409)
        return v
