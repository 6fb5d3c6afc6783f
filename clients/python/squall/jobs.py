"""``client.map``: a function over many inputs, in chunks, streamed."""

import base64
import itertools
import json
import pickle
import queue
import sys
import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, List, Optional, Tuple, Union

from squall._ship import PROTOCOL
from squall.errors import ElementError, SquallError

if TYPE_CHECKING:
    from squall.client import Client

SERIALIZERS = ("json", "pickle", "bytes")

#: Waits for a busy node (429) do not count as retries; at most this many.
MAX_BUSY_WAITS = 200

#: (index of the chunk's first element, its length, its outcomes).
Chunk = Tuple[int, int, "Future[List[Tuple[bool, Any]]]"]


def call_chunk(client: "Client", name: str, items: List[Any], star: bool, serializer: str, key: Optional[str]) -> List[Any]:
    """One invocation of a shipped Python function over ``items``; their results."""
    pickled = serializer == "pickle"
    if pickled:
        items = [base64.b64encode(pickle.dumps(x, protocol=PROTOCOL)).decode() for x in items]
    body = json.dumps({"enc": "pickle" if pickled else "json", "star": star, "items": items})
    out = json.loads(client.invoke(name, body, idempotency_key=key))
    if pickled:
        out = [pickle.loads(base64.b64decode(x)) for x in out]
    return out


def _show_progress() -> bool:
    return sys.stderr.isatty() or "ipykernel" in sys.modules


class MapJob:
    """A running map. Iterate it for the results in input order (lazily;
    a failed element raises its ``ElementError`` where it comes), or call
    ``results()`` for the list, or ``futures()`` for one future per
    element. Inputs are read a few chunks ahead of the results read."""

    def __init__(
        self,
        client: "Client",
        fn: Union[str, Callable[[Any], Any]],
        inputs: Iterable[Any],
        concurrency: int,
        retries: int,
        chunk_size: Optional[int],
        serializer: str,
        progress: Optional[bool],
    ) -> None:
        if serializer not in SERIALIZERS:
            raise ValueError(f"serializer is one of {SERIALIZERS}, not {serializer!r}")
        if concurrency < 1 or retries < 0:
            raise ValueError("concurrency is at least 1 and retries at least 0")
        self._client = client
        self._python = not isinstance(fn, str)
        if self._python and serializer == "bytes":
            raise ValueError('a Python function\'s inputs are "json" or "pickle"')
        self.function = client.ship(fn) if not isinstance(fn, str) else fn
        self._serializer = serializer
        self._retries = retries
        total = len(inputs) if hasattr(inputs, "__len__") else None  # type: ignore[arg-type]
        if chunk_size is None:
            if not self._python:
                chunk_size = 1
            elif total is not None:
                # One chunk per worker: each chunk costs a fresh instance.
                chunk_size = max(1, min(1000, -(-total // concurrency)))
            else:
                chunk_size = 256
        if chunk_size < 1:
            raise ValueError("chunk_size is at least 1")
        if not self._python and chunk_size != 1:
            raise ValueError("a deployed function takes one input per invocation (chunk_size=1)")
        self.chunk_size = chunk_size
        self.total = total
        self.id = uuid.uuid4().hex[:16]
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix=f"squall-map-{self.id}")
        self._ahead = threading.Semaphore(concurrency * 2)
        self._chunks: "queue.Queue[Union[Chunk, None, BaseException]]" = queue.Queue()
        self._cancelled = False
        self._results: Optional[List[Any]] = None
        self._consuming = False
        show = _show_progress() if progress is None else progress
        from tqdm.auto import tqdm

        self._bar = tqdm(total=total, disable=not show, unit="el", desc=f"map {self.function}", file=sys.stderr)
        self._bar_lock = threading.Lock()
        self._feeder = threading.Thread(target=self._feed, args=(iter(inputs),), daemon=True, name=f"squall-feed-{self.id}")
        self._feeder.start()

    # Running.

    def _feed(self, inputs: Iterator[Any]) -> None:
        index = 0
        try:
            while not self._cancelled:
                chunk = list(itertools.islice(inputs, self.chunk_size))
                if not chunk:
                    break
                self._ahead.acquire()
                if self._cancelled:
                    break
                self._chunks.put((index, len(chunk), self._pool.submit(self._run, index, chunk)))
                index += len(chunk)
            self._chunks.put(None)
        except BaseException as e:  # the inputs' iterator raised
            self._chunks.put(e)

    def _run(self, index: int, chunk: List[Any]) -> List[Tuple[bool, Any]]:
        if self._cancelled:
            gone = SquallError("cancelled", "the job was cancelled before this chunk started")
            return [(False, ElementError(index + i, gone)) for i in range(len(chunk))]
        try:
            outcomes = [(True, v) for v in self._attempts(index, chunk)]
        except SquallError as e:
            if len(chunk) == 1:
                outcomes = [(False, ElementError(index, e))]
            else:
                # One by one: the element that fails is the one reported,
                # and the others' writes commit.
                outcomes = []
                for i, x in enumerate(chunk):
                    try:
                        outcomes.append((True, self._attempts(index + i, [x])[0]))
                    except SquallError as e1:
                        outcomes.append((False, ElementError(index + i, e1)))
        with self._bar_lock:
            self._bar.update(len(chunk))
        return outcomes

    def _attempts(self, index: int, chunk: List[Any]) -> List[Any]:
        # The same key on every attempt: a chunk that did commit before its
        # answer was lost answers again without running twice.
        key = f"map-{self.id}-{index}-{len(chunk)}"
        attempt, busy = 0, 0
        while True:
            try:
                return self._call(chunk, key)
            except SquallError as e:
                if e.code in ("busy", "quota_exceeded") and busy < MAX_BUSY_WAITS:
                    busy += 1
                    time.sleep(min(1.0, 0.005 * 2 ** min(busy, 8)))
                    continue
                if attempt >= self._retries or e.code in ("function_not_found", "bad_request", "payload_too_large"):
                    raise
                attempt += 1
                time.sleep(0.01 * 2 ** attempt)

    def _call(self, chunk: List[Any], key: str) -> List[Any]:
        if self._python:
            return call_chunk(self._client, self.function, chunk, False, self._serializer, key)
        (x,) = chunk
        data = x if isinstance(x, (bytes, str)) else json.dumps(x)
        out = self._client.invoke(self.function, data, idempotency_key=key)
        return [json.loads(out) if self._serializer == "json" else out]

    # Reading.

    def _started_chunks(self) -> Iterator[Chunk]:
        """The chunks in input order as the feeder starts them; a job is
        read once (refused at the call, not at the first chunk)."""
        if self._consuming:
            raise RuntimeError("a map job's results are read once: keep what results() or futures() returned")
        self._consuming = True

        def chunks() -> Iterator[Chunk]:
            while True:
                item = self._chunks.get()
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item

        return chunks()

    def _outcomes(self) -> Iterator[Tuple[bool, Any]]:
        chunks = self._started_chunks()
        try:
            for _, _, future in chunks:
                outcomes = future.result()
                self._ahead.release()
                yield from outcomes
        finally:
            # Read to the end, or left early (a break, an error raised):
            # nothing more starts, and the feeder is let go.
            self._cancelled = True
            self._ahead.release()
            self._bar.close()
            self._pool.shutdown(wait=False, cancel_futures=True)

    def __iter__(self) -> Iterator[Any]:
        for ok, v in self._outcomes():
            if not ok:
                raise v
            yield v

    def results(self, return_exceptions: bool = False) -> List[Any]:
        """Every result, in input order. A failed element raises its
        ``ElementError`` (the first one, once all have run), or stands in
        its place with ``return_exceptions=True``."""
        if self._results is None:
            self._results = [v for _, v in self._outcomes()]
        failed = next((v for v in self._results if isinstance(v, ElementError)), None)
        if failed is not None and not return_exceptions:
            raise failed
        return list(self._results)

    def futures(self) -> List["Future[Any]"]:
        """One future per element (this reads all the inputs now)."""
        futures: List["Future[Any]"] = []
        chunks: List[Chunk] = []
        for item in self._started_chunks():
            chunks.append(item)
            self._ahead.release()  # the caller holds the futures, not the window
        for _, n, chunk in chunks:
            mine = [Future() for _ in range(n)]
            futures.extend(mine)

            def settle(done: "Future[List[Tuple[bool, Any]]]", mine: List["Future[Any]"] = mine) -> None:
                try:
                    outcomes = done.result()
                except BaseException as e:  # the chunk itself broke (an input that does not encode, say)
                    for f in mine:
                        f.set_exception(e)
                    return
                for f, (ok, v) in zip(mine, outcomes):
                    if ok:
                        f.set_result(v)
                    else:
                        f.set_exception(v)

            chunk.add_done_callback(settle)
        return futures

    def cancel(self) -> None:
        """Starts no more chunks (those running finish); the elements of
        chunks not started read as ``ElementError`` ``cancelled``."""
        self._cancelled = True
        self._ahead.release()
