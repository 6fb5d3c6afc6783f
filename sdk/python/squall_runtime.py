"""The shared Python runtime: the component every `squall deploy NAME app.py`
without dependencies runs on; the function's files come with its deploy.

What is imported or done here happens once, when the component is built,
and is kept in its snapshot: each call starts with it done."""

import base64  # noqa: F401
import collections  # noqa: F401
import dataclasses  # noqa: F401
import datetime  # noqa: F401
import functools  # noqa: F401
import hashlib  # noqa: F401
import itertools  # noqa: F401
import json
import math  # noqa: F401
import random  # noqa: F401
import re  # noqa: F401
import struct  # noqa: F401
import time  # noqa: F401
import typing  # noqa: F401

import squall_sdk  # noqa: F401
from squall_sdk._entry import WitWorld  # noqa: F401

# The compiler's first run sets up what later runs reuse.
compile("import json\n\ndef handle(x: bytes) -> bytes:\n    return json.dumps([x.decode()]).encode()\n", "<warm>", "exec")
json.loads('{"main": "app", "files": {}}')
