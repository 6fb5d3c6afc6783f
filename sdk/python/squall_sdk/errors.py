"""The exceptions the SDK raises, each with a stable ``code``."""


class SquallError(Exception):
    """A host operation failed: ``code`` names how, ``message`` says more."""

    def __init__(self, code: str, message: str = "") -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code
        self.message = message


class StoreError(SquallError):
    """``wrong_type``, ``not_integer``, ``unavailable`` or ``too_large``."""


class CallError(SquallError):
    """``not_found``, ``failed`` (with the callee's ``failure_code``: ``trap``,
    ``timeout``, ``limit_exceeded``, ``function_error``), ``limit``,
    ``invalid`` or ``unavailable``."""

    def __init__(self, code: str, message: str = "", failure_code: str = "") -> None:
        super().__init__(code, f"{failure_code}: {message}" if failure_code else message)
        self.failure_code = failure_code


class SendError(SquallError):
    """``no_such_invocation``, ``mailbox_full`` or ``too_large``."""


def _variant_code(v: object) -> str:
    # StoreError_WrongType -> wrong_type
    name = type(v).__name__.split("_", 1)[-1]
    return "".join("_" + c.lower() if c.isupper() else c for c in name).lstrip("_")


def store_error(v: object) -> StoreError:
    return StoreError(_variant_code(v), getattr(v, "value", "") or "")


def call_error(v: object) -> CallError:
    code = _variant_code(v)
    value = getattr(v, "value", "")
    if code == "failed":
        return CallError(code, value.message, value.code)
    return CallError(code, value or "")


def send_error(v: object) -> SendError:
    return SendError(_variant_code(v), getattr(v, "value", "") or "")
