"""Turns a plain Python function into the source of a Squall function.

What travels: the function's own source (from ``inspect``), the modules it
uses by name (as imports), the other functions of the caller's code it
calls (their source, the same way), and the other global values and
closure variables it reads (pickled). What does not: lambdas, functions
whose source ``inspect`` cannot find (typed at a bare interactive prompt),
modules that are not in the guest's standard library (only the standard
library is there), and values that do not pickle.
"""

import base64
import dis
import hashlib
import inspect
import pickle
import re
import textwrap
import types
from typing import Callable, Dict, List, Set

from squall.errors import SquallError

#: Pickles cross from this interpreter to the guest's CPython 3.14 and back.
PROTOCOL = 4

#: The chunk handler: a request is {"enc": "json"|"pickle", "star": bool,
#: "items": [...]}; the answer is the list of results, in the same encoding.
_HANDLER = '''

_squall_fn = {fn}


def handle(input):
    req = _squall_json.loads(input)
    pickled = req["enc"] == "pickle"
    items = req["items"]
    if pickled:
        items = [_squall_pickle.loads(_squall_b64.b64decode(x)) for x in items]
    if req["star"]:
        out = [_squall_fn(*a[0], **a[1]) for a in items]
    else:
        out = [_squall_fn(x) for x in items]
    if pickled:
        out = [_squall_b64.b64encode(_squall_pickle.dumps(x, protocol={protocol})).decode() for x in out]
    return _squall_json.dumps(out)
'''

#: For ``client.deploy(name, fn)``: the input's bytes in, fn's answer out.
_PLAIN = '''

_squall_fn = {fn}


def handle(input):
    return _squall_fn(input)
'''


def _names(code: types.CodeType) -> Set[str]:
    """Global names a code object (and the code nested in it) reads (not
    attribute names, which ``co_names`` also holds)."""
    names = {i.argval for i in dis.get_instructions(code) if i.opname in ("LOAD_GLOBAL", "LOAD_NAME")}
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _names(const)
    return names


def _source(fn: Callable) -> str:
    if not isinstance(fn, types.FunctionType):
        raise SquallError("cannot_ship", f"{fn!r} is not a plain Python function")
    if fn.__name__ == "<lambda>":
        raise SquallError("cannot_ship", "a lambda cannot be shipped: define it with def")
    try:
        src = textwrap.dedent(inspect.getsource(fn))
    except (OSError, TypeError) as e:
        raise SquallError("cannot_ship", f"the source of {fn.__name__} cannot be found ({e}): define it in a file or a notebook cell") from None
    # Decorators are not carried (they ran here already).
    m = re.search(r"^(async\s+)?def\s", src, re.M)
    return src[m.start():] if m else src


def module_source(fn: Callable, handler: str = "chunks") -> str:
    """The source of a module that defines ``fn`` and a ``handle`` for it."""
    lines: List[str] = [
        "import base64 as _squall_b64",
        "import json as _squall_json",
        "import pickle as _squall_pickle",
    ]
    defs: List[str] = []
    values: Dict[str, object] = {}
    seen: Set[str] = set()

    def visit(f: types.FunctionType) -> None:
        if f.__name__ in seen:
            return
        seen.add(f.__name__)
        src = _source(f)
        # Closure variables become module globals of the same name.
        for name, cell in zip(f.__code__.co_freevars, f.__closure__ or ()):
            v = cell.cell_contents
            if isinstance(v, types.ModuleType):
                lines.append(f"import {v.__name__} as {name}")
            else:
                values[name] = v
        for name in sorted(_names(f.__code__)):
            if name in seen or name in values or name not in f.__globals__:
                continue
            v = f.__globals__[name]
            if isinstance(v, types.ModuleType):
                lines.append(f"import {v.__name__} as {name}" if v.__name__ != name else f"import {name}")
            elif isinstance(v, types.FunctionType) and v.__module__ == f.__module__:
                visit(v)
            else:
                values[name] = v
        defs.append(src)

    visit(fn)
    # Functions among the closure values are shipped as source too.
    for name, v in list(values.items()):
        if isinstance(v, types.FunctionType) and v.__name__ == name:
            del values[name]
            visit(v)
    if values:
        try:
            blob = base64.b64encode(pickle.dumps(values, protocol=PROTOCOL)).decode()
        except Exception as e:
            raise SquallError("cannot_ship", f"the values {sorted(values)} that {fn.__name__} uses do not pickle: {e}") from None
        lines.append(f"globals().update(_squall_pickle.loads(_squall_b64.b64decode({blob!r})))")
    body = "\n".join(lines) + "\n\n\n" + "\n\n".join(defs)
    template = _HANDLER if handler == "chunks" else _PLAIN
    return body + template.format(fn=fn.__name__, protocol=PROTOCOL)


def function_name(fn: Callable, source: str) -> str:
    """A deploy name that changes when the shipped source does."""
    digest = hashlib.sha256(source.encode()).hexdigest()[:12]
    base = re.sub(r"[^A-Za-z0-9_-]", "_", getattr(fn, "__name__", "fn"))[:40]
    return f"py-{base}-{digest}"
