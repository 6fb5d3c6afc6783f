"""Errors the client raises: each has the node's stable ``code``."""

from typing import Optional


class SquallError(Exception):
    """A request the node refused or could not answer.

    ``code`` is the node's error code (``function_not_found``,
    ``function_error``, ``timeout``, ``busy``, ...), ``status`` the HTTP
    status (0 when the node could not be reached)."""

    def __init__(self, code: str, message: str, status: int = 0) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status


class ElementError(SquallError):
    """An element of a map (or a submitted call) that failed after its
    retries: ``index`` is its place in the inputs, ``cause`` what the last
    attempt said."""

    def __init__(self, index: int, cause: SquallError) -> None:
        super().__init__(cause.code, f"element {index}: {cause.message}", cause.status)
        self.index = index
        self.cause = cause


def from_response(status: int, body: bytes) -> SquallError:
    import json

    code: Optional[str] = None
    message = body.decode(errors="replace")
    try:
        err = json.loads(body)["error"]
        code, message = err["code"], err["message"]
    except (ValueError, KeyError, TypeError):
        pass
    return SquallError(code or f"http_{status}", message, status)
