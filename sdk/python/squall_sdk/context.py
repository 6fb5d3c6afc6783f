"""What this invocation is."""

from wit_world.imports import context as _wit


def invocation_id() -> str:
    return _wit.invocation_id()


def root_invocation_id() -> str:
    """The id of the request's first function, whose success commits the tree."""
    return _wit.root_invocation_id()


def function_name() -> str:
    return _wit.function_name()


def function_version() -> int:
    return _wit.function_version()


def deadline_ms() -> int:
    """When the invocation will be stopped, in ms since the Unix epoch."""
    return _wit.deadline_ms()


def attempt() -> int:
    """1 on the first delivery of this input, more on a retry."""
    return _wit.attempt()
