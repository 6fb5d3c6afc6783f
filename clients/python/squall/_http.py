"""One keep-alive HTTP/1.1 connection per thread to the node."""

import http.client
import threading
import urllib.parse
from typing import Dict, Mapping, Optional, Tuple, Union

from squall.errors import SquallError, from_response

Response = Tuple[int, Dict[str, str], bytes]


class Http:
    def __init__(self, url: str, token: Optional[str], timeout: float) -> None:
        u = urllib.parse.urlsplit(url if "://" in url else "http://" + url)
        if u.scheme not in ("http", "https"):
            raise ValueError(f"the node's URL must be http:// or https://, not {url!r}")
        self.base = u.path.rstrip("/")
        self._https = u.scheme == "https"
        self._host = u.hostname or "127.0.0.1"
        self._port = u.port or (443 if self._https else 80)
        self._token = token
        self._timeout = timeout
        self._local = threading.local()

    def _connection(self) -> http.client.HTTPConnection:
        c = getattr(self._local, "c", None)
        if c is None:
            cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            c = cls(self._host, self._port, timeout=self._timeout)
            self._local.c = c
        return c

    def request(
        self, method: str, path: str, body: bytes = b"", headers: Optional[Mapping[str, str]] = None
    ) -> Response:
        h = {"Content-Length": str(len(body))}
        if self._token:
            h["Authorization"] = f"Bearer {self._token}"
        h.update(headers or {})
        # A kept-alive connection the node closed while it was idle fails
        # before any answer (the node read nothing): that, and only that, is
        # retried once on a new connection, so no request runs twice.
        for attempt in (0, 1):
            reused = getattr(self._local, "c", None) is not None
            c = self._connection()
            try:
                c.request(method, self.base + path, body=body, headers=h)
                r = c.getresponse()
                data = r.read()
                return r.status, {k.lower(): v for k, v in r.getheaders()}, data
            except (ConnectionError, http.client.HTTPException, OSError) as e:
                c.close()
                self._local.c = None
                idle_close = isinstance(e, (BrokenPipeError, http.client.RemoteDisconnected))
                if attempt == 1 or not (reused and idle_close):
                    raise SquallError("unreachable", f"{method} {path}: {e}") from e
        raise AssertionError("unreachable")

    def ok(self, method: str, path: str, body: bytes = b"", headers: Optional[Mapping[str, str]] = None) -> Response:
        status, head, data = self.request(method, path, body, headers)
        if status >= 400:
            raise from_response(status, data)
        return status, head, data


def quote(s: Union[str, bytes]) -> str:
    return urllib.parse.quote(s, safe="")
