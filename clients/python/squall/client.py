"""``Client``: a Squall node from Python."""

import asyncio
import json
import os
import shutil
import subprocess
import tempfile
import threading
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterable, List, Mapping, Optional, Union

from squall import _ship
from squall._http import Http, quote
from squall.errors import SquallError
from squall.kv import KV

if TYPE_CHECKING:
    from squall.jobs import MapJob

Data = Union[bytes, bytearray, memoryview, str]

#: The environment value that carries a Python function's files to the
#: shared runtime (as `squall deploy NAME app.py` sends them).
SOURCE_ENV = "SQUALL_PYTHON"
#: The most a function's files may take in a deploy's query (as the CLI).
MAX_SHARED_QUERY = 48 << 10


def _query(memory: Optional[str], timeout: Optional[str], env: Optional[Mapping[str, str]]) -> List[str]:
    q = []
    if memory:
        q.append("memory=" + quote(memory))
    if timeout:
        q.append("timeout=" + quote(timeout))
    for k, v in (env or {}).items():
        q.append("env=" + quote(f"{k}={v}"))
    return q


def _data(d: Data) -> bytes:
    if isinstance(d, bytes):
        return d
    if isinstance(d, (bytearray, memoryview)):
        return bytes(d)
    if isinstance(d, str):
        return d.encode()
    raise TypeError(f"an input is bytes or str, not {type(d).__name__} (map and submit take any value)")


class Client:
    """A node, by its HTTP URL (``http://127.0.0.1:7700`` by default, or
    ``$SQUALL_NODE``); ``token`` is sent as ``Authorization: Bearer``
    (default ``$SQUALL_TOKEN``)."""

    def __init__(self, url: Optional[str] = None, token: Optional[str] = None, timeout: float = 60.0) -> None:
        self.url = url or os.environ.get("SQUALL_NODE", "http://127.0.0.1:7700")
        self._token = token if token is not None else os.environ.get("SQUALL_TOKEN")
        self._http = Http(self.url, self._token, timeout)
        self.kv = KV(self._http)
        self._pool: Optional[ThreadPoolExecutor] = None
        self._lock = threading.Lock()
        self._shipped: Dict[str, str] = {}

    # Functions.

    def invoke(
        self,
        name: str,
        data: Data = b"",
        idempotency_key: Optional[str] = None,
        timeout_ms: Optional[int] = None,
    ) -> bytes:
        """Runs the function ``name`` on ``data``; its output. Raises
        ``SquallError`` with the node's code (``function_error``,
        ``timeout``, ``busy``, ...)."""
        headers = {}
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        if timeout_ms is not None:
            headers["X-Squall-Timeout-Ms"] = str(int(timeout_ms))
        _, _, body = self._http.ok("POST", f"/v1/functions/{quote(name)}/invoke", _data(data), headers)
        return body

    async def invoke_async(self, name: str, data: Data = b"", **kw: Any) -> bytes:
        """``invoke`` for asyncio: runs in a thread, the loop goes on."""
        return await asyncio.get_running_loop().run_in_executor(self._executor(), lambda: self.invoke(name, data, **kw))

    def functions(self) -> List[Dict[str, Any]]:
        """The deployed functions, as the node describes them."""
        return json.loads(self._http.ok("GET", "/v1/functions")[2])["functions"]

    def deploy(
        self,
        name: str,
        what: Union[str, Path, Callable[[bytes], Any]],
        memory: Optional[str] = None,
        timeout: Optional[str] = None,
        env: Optional[Mapping[str, str]] = None,
    ) -> Dict[str, Any]:
        """Deploys ``what`` as the function ``name``: a component (``.wasm``),
        a Python file or directory (as ``squall deploy`` builds it), or a
        plain Python function taking the input's bytes (shipped to the
        Python runtime; see ``map`` for what travels)."""
        if callable(what):
            files = {"app.py": _ship.module_source(what, handler="plain")}
            return self._deploy_source(name, files, memory, timeout, env)
        path = Path(what)
        if path.suffix == ".wasm":
            q = "&".join(_query(memory, timeout, env))
            _, _, r = self._http.ok("PUT", f"/v1/functions/{quote(name)}" + ("?" + q if q else ""), path.read_bytes())
            return json.loads(r)
        return self._deploy_with_cli(name, path, memory, timeout, env)

    def _runtime_digest(self) -> Optional[str]:
        for f in self.functions():
            if SOURCE_ENV in (f.get("env") or {}):
                return f["digest"]
        return None

    def _deploy_source(
        self,
        name: str,
        files: Dict[str, str],
        memory: Optional[str] = None,
        timeout: Optional[str] = None,
        env: Optional[Mapping[str, str]] = None,
    ) -> Dict[str, Any]:
        """Deploys Python files on the node's shared Python runtime: by the
        digest of a Python function already there, else with the squall CLI
        (which builds the runtime with componentize-py)."""
        spec = json.dumps({"main": "app", "files": files})
        env_query = "env=" + quote(f"{SOURCE_ENV}={spec}")
        # A request line holds 64 KiB: larger files are built into a
        # component of their own by the CLI.
        digest = self._runtime_digest() if len(env_query) <= MAX_SHARED_QUERY else None
        if digest is None:
            with tempfile.TemporaryDirectory() as d:
                for rel, text in files.items():
                    p = Path(d) / rel
                    p.parent.mkdir(parents=True, exist_ok=True)
                    p.write_text(text)
                return self._deploy_with_cli(name, Path(d), memory, timeout, env)
        query = [f"digest={digest}", env_query] + _query(memory, timeout, env)
        _, _, r = self._http.ok("PUT", f"/v1/functions/{quote(name)}?" + "&".join(query))
        return json.loads(r)

    def _deploy_with_cli(
        self,
        name: str,
        path: Path,
        memory: Optional[str],
        timeout: Optional[str],
        env: Optional[Mapping[str, str]],
    ) -> Dict[str, Any]:
        squall = os.environ.get("SQUALL_BIN") or shutil.which("squall")
        if squall is None:
            raise SquallError(
                "no_python_runtime",
                "the node has no Python function to share its runtime with, and the squall CLI is not on the PATH "
                "to build one: deploy any Python function first (`squall deploy hello examples/python/hello/app.py`)",
            )
        cmd = [squall, "deploy", name, str(path), "--node", self.url, "--json"]
        if memory:
            cmd += ["--memory", memory]
        if timeout:
            cmd += ["--timeout", timeout]
        for k, v in (env or {}).items():
            cmd += ["--env", f"{k}={v}"]
        env_vars = dict(os.environ)
        if self._token:
            env_vars["SQUALL_TOKEN"] = self._token
        r = subprocess.run(cmd, capture_output=True, text=True, env=env_vars)
        if r.returncode != 0:
            raise SquallError("deploy_failed", r.stderr.strip() or r.stdout.strip())
        return json.loads(r.stdout.strip().splitlines()[-1])

    def ship(self, fn: Callable) -> str:
        """Deploys ``fn`` (a plain Python function) for ``map`` and
        ``submit``, once per version of its source; the function's name."""
        source = _ship.module_source(fn)
        name = _ship.function_name(fn, source)
        with self._lock:
            if self._shipped.get(name) == source:
                return name
        status, _, _ = self._http.request("GET", f"/v1/functions/{quote(name)}")
        if status != 200:
            self._deploy_source(name, {"app.py": source})
        with self._lock:
            self._shipped[name] = source
        return name

    # PyWren's interface.

    def map(
        self,
        fn: Union[str, Callable[[Any], Any]],
        inputs: Iterable[Any],
        concurrency: int = 32,
        retries: int = 2,
        chunk_size: Optional[int] = None,
        serializer: str = "json",
        progress: Optional[bool] = None,
    ) -> "MapJob":
        """Runs ``fn`` on every element of ``inputs``; a ``MapJob`` whose
        ``results()`` are the outputs in input order.

        ``fn`` is a plain Python function (shipped to the node's Python
        runtime: its source, the modules it imports, the functions it calls,
        the values it reads, pickled) or the name of a deployed function.
        A Python function gets elements in chunks of ``chunk_size`` per
        invocation, each chunk one atomic invocation; a deployed function
        gets one element per invocation (its input: bytes and str as they
        are, other values as JSON; outputs are bytes, or JSON with
        ``serializer="json"``). ``serializer`` is ``"json"`` or ``"pickle"``
        (for a Python function) or ``"bytes"`` (for a deployed one: outputs
        as bytes). A failed chunk runs again up to ``retries`` times, then
        its elements one by one, so the element that fails is the one
        reported. ``inputs`` is read as the job goes, a few chunks ahead of
        the results read, so a million inputs never sit in memory at once.
        ``progress`` shows a tqdm bar (default: when stderr is a terminal or
        in a notebook)."""
        from squall.jobs import MapJob

        return MapJob(self, fn, inputs, concurrency, retries, chunk_size, serializer, progress)

    def submit(self, fn: Union[str, Callable[..., Any]], *args: Any, **kwargs: Any) -> "Future[Any]":
        """Runs ``fn(*args, **kwargs)`` in Squall; a ``concurrent.futures.Future``
        of its result (for a deployed function's name: one argument, its input)."""
        if isinstance(fn, str):
            if kwargs or len(args) > 1:
                raise TypeError("a deployed function takes one input")
            return self._executor().submit(self.invoke, fn, *args)
        name = self.ship(fn)

        def run() -> Any:
            from squall.jobs import call_chunk

            return call_chunk(self, name, [[list(args), kwargs]], star=True, serializer="pickle", key=str(uuid.uuid4()))[0]

        return self._executor().submit(run)

    def _executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=32, thread_name_prefix="squall")
            return self._pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False)

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

