"""Squall's guest SDK for Python functions.

A function is a module with a plain ``handle``::

    from squall_sdk import store

    def handle(input: bytes) -> bytes:
        return str(store.incr("visits")).encode()

``handle`` takes the request's bytes and returns ``bytes``, ``str`` (UTF-8),
``int`` (its digits) or ``None`` (an empty answer). Everything it writes through ``store`` commits
atomically when it returns; an exception it does not catch becomes the
function's error (HTTP 422 ``function_error``, ``"ValueError: ..."``) and
nothing is written. Keys, values, fields and members are ``bytes``; a ``str``
is taken as UTF-8 and an ``int`` as its decimal digits.

The modules: ``store`` (registers, counters, sets, maps, scans), ``calls``
(call and spawn other functions in the same atomic unit), ``messages``
(between running invocations), ``log`` and ``context``. This package runs
inside the component, built by ``squall deploy NAME app.py``; it is not the
client package (``pip install ./clients/python``).
"""

from squall_sdk import calls, context, log, messages, store
from squall_sdk.errors import CallError, SendError, StoreError

__all__ = ["store", "calls", "messages", "log", "context", "StoreError", "CallError", "SendError"]
