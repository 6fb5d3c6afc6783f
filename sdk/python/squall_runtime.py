"""The shared Python runtime: the component every `squall deploy NAME app.py`
without dependencies runs on; the function's files come with its deploy.

What is imported or done here happens once, when the component is built,
and is kept in its snapshot: each call starts with it done. The component
holds only the standard modules imported here (and what they import): a
function's `import` of any other standard module fails with
ModuleNotFoundError. `STDLIB` is that list, in the README too."""

import importlib
import json

STDLIB = [
    "abc", "array", "base64", "binascii", "bisect", "calendar", "cmath", "collections", "collections.abc",
    "colorsys", "contextlib", "copy", "copyreg", "csv", "dataclasses", "datetime", "decimal", "difflib",
    "enum", "fnmatch", "fractions", "functools", "graphlib", "gzip", "hashlib", "heapq", "hmac", "html",
    "html.parser", "io", "ipaddress", "itertools", "json", "keyword", "math", "numbers", "operator",
    "pickle", "pprint", "random", "re", "secrets", "shlex", "statistics", "string", "struct", "textwrap",
    "time", "traceback", "types", "typing", "unicodedata", "urllib.parse", "uuid", "warnings", "weakref",
    "zlib",
]

for _name in STDLIB:
    importlib.import_module(_name)

import squall_sdk  # noqa: E402,F401
from squall_sdk._entry import WitWorld  # noqa: E402,F401

# The compiler's first run sets up what later runs reuse.
compile("import json\n\ndef handle(x: bytes) -> bytes:\n    return json.dumps([x.decode()]).encode()\n", "<warm>", "exec")
json.loads('{"main": "app", "files": {}}')
