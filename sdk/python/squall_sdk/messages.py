"""Messages between running invocations on this node (not transactional)."""

from typing import Optional

from componentize_py_types import Err
from wit_world.imports import messages as _wit

from squall_sdk._bytes import Bytes, b
from squall_sdk.errors import send_error


def send(invocation_id: str, message: Bytes) -> None:
    """Puts ``message`` in that running invocation's mailbox."""
    try:
        _wit.send(invocation_id, b(message))
    except Err as e:
        raise send_error(e.value) from None


def recv(timeout_ms: int = 1000) -> Optional[bytes]:
    """The next message in this invocation's mailbox, or None after ``timeout_ms``."""
    return _wit.recv(int(timeout_ms))
