"""Lines for this invocation's log (``squall logs NAME``)."""

from wit_world.imports import log as _wit


def _at(level: "_wit.Level", parts: tuple) -> None:
    _wit.log(level, " ".join(str(p) for p in parts))


def trace(*parts: object) -> None:
    _at(_wit.Level.TRACE, parts)


def debug(*parts: object) -> None:
    _at(_wit.Level.DEBUG, parts)


def info(*parts: object) -> None:
    _at(_wit.Level.INFO, parts)


def warn(*parts: object) -> None:
    _at(_wit.Level.WARN, parts)


def error(*parts: object) -> None:
    _at(_wit.Level.ERROR, parts)
