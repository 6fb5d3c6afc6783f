"""Calls of other functions, inside this invocation's atomic unit.

A callee reads this invocation's writes as they were when it was called or
spawned; when it succeeds its writes join this invocation's, when it fails
they are dropped and ``CallError`` is raised here.
"""

from typing import List, Sequence, Union

from componentize_py_types import Err, Ok
from wit_world.imports import calls as _wit

from squall_sdk._bytes import Bytes, b
from squall_sdk.errors import CallError, call_error


def call(name: str, input: Bytes = b"") -> bytes:
    """Runs ``name`` on ``input`` and waits for its output."""
    try:
        return _wit.call(name, b(input))
    except Err as e:
        raise call_error(e.value) from None


class Pending:
    """A spawned call, running while its caller goes on."""

    def __init__(self, handle: "_wit.Pending") -> None:
        self._handle = handle

    @property
    def invocation_id(self) -> str:
        """The callee's invocation id (to ``messages.send`` it messages)."""
        return self._handle.invocation_id()

    def wait(self) -> bytes:
        """Waits for the callee's output (once; again raises ``invalid``)."""
        try:
            return self._handle.await_()
        except Err as e:
            raise call_error(e.value) from None


def spawn(name: str, input: Bytes = b"") -> Pending:
    """Starts ``name`` on ``input``; it runs concurrently with the caller."""
    try:
        return Pending(_wit.spawn(name, b(input)))
    except Err as e:
        raise call_error(e.value) from None


def await_all(pending: Sequence[Pending]) -> List[Union[bytes, CallError]]:
    """Waits for all; each output, or the ``CallError`` of that call, in order."""
    results = _wit.await_all([p._handle for p in pending])
    return [r.value if isinstance(r, Ok) else call_error(r.value) for r in results]
