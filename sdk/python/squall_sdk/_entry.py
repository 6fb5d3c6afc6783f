"""The component's export: runs the user's ``handle`` and maps its outcome.

The world is ``handler-with-init``: ``init`` loads the function's modules
when its instance is made (before a warm call arrives), ``handle`` runs
them. Two ways to get the user's code. A function built into its own component
(``squall deploy NAME DIR`` with a requirements.txt) calls ``bind`` at build
time, so its modules are imported once and kept in the component's
snapshot. Functions deployed on the shared Python runtime (every other
``squall deploy NAME app.py``) carry their modules in the environment value
``SQUALL_PYTHON`` (JSON: ``{"main": "app", "files": {"app.py": "..."}}``),
loaded by each instance from memory: one compiled runtime serves them all.
"""

import importlib
import importlib.abc
import importlib.util
import json
import linecache
import os
import sys
import traceback
import warnings
from types import ModuleType
from typing import Callable, Dict, Optional

from componentize_py_types import Err

import wit_world
from squall_sdk import log
from squall_sdk._bytes import b

Handler = Callable[[bytes], object]

_handle: Optional[Handler] = None


class _Files(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports modules from sources held in memory, by path."""

    def __init__(self, files: Dict[str, str]) -> None:
        self.modules: Dict[str, tuple] = {}
        for path, source in files.items():
            if not path.endswith(".py"):
                continue
            parts = path[: -len(".py")].split("/")
            package = parts[-1] == "__init__"
            if package:
                parts.pop()
            self.modules[".".join(parts)] = (path, source, package)

    def find_spec(self, name, path=None, target=None):
        found = self.modules.get(name)
        if found is None:
            return None
        return importlib.util.spec_from_loader(name, self, origin=found[0], is_package=found[2])

    def create_module(self, spec):
        return None

    def exec_module(self, module: ModuleType) -> None:
        path, source, _ = self.modules[module.__name__]
        module.__file__ = path
        # Tracebacks show the lines.
        linecache.cache[path] = (len(source), None, source.splitlines(True), path)
        exec(compile(source, path, "exec"), module.__dict__)


def _find(module: ModuleType) -> Handler:
    h = getattr(module, "handle", None)
    if not callable(h):
        raise TypeError(f"{module.__name__}.py defines no function handle(input: bytes) -> bytes")
    return h


def bind(module: str) -> None:
    """Imports the function's module now (at build time) and keeps its handle."""
    global _handle
    _handle = _find(importlib.import_module(module))


def _load() -> Handler:
    global _handle
    if _handle is None:
        spec = os.environ.get("SQUALL_PYTHON")
        if spec is None:
            raise RuntimeError("this is Squall's Python runtime without a function: deploy with `squall deploy NAME app.py`")
        spec = json.loads(spec)
        sys.meta_path.insert(0, _Files(spec["files"]))
        _handle = _find(importlib.import_module(spec["main"]))
    return _handle


def _output(out: object) -> bytes:
    if out is None:
        return b""
    try:
        return b(out)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"handle returned {type(out).__name__}: return bytes, str, int or None") from None


class WitWorld(wit_world.WitWorld):
    def init(self) -> None:
        # Runs as the instance is made (ahead of a warm call): loads the
        # function's modules. Nothing may be logged here.
        try:
            # A warning printed here would keep the instance from being
            # made ahead of its call: none is shown while modules load.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                _load()
        except BaseException as e:
            raise Err("".join(traceback.format_exception_only(e)).strip()) from None

    def handle(self, input: bytes) -> bytes:
        try:
            return _output(_load()(input))
        except Err as e:
            raise Err(str(e.value)) from None
        except BaseException as e:
            # The whole traceback goes to the invocation's log; the answer
            # names the exception.
            try:
                log.error(traceback.format_exc().rstrip())
            except BaseException:
                pass
            raise Err(f"{type(e).__name__}: {e}") from None
