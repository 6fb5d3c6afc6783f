"""Squall from Python: invoke functions, use the store, and map a plain
Python function over a million inputs (PyWren's interface).

    import squall

    client = squall.Client("http://127.0.0.1:7700")
    client.invoke("hello", b"world")              # b"Hello, world!"
    client.kv.incr("visits")                      # a counter
    def square(x):
        return x * x
    client.map(square, range(10_000)).results()   # [0, 1, 4, 9, ...]
"""

from concurrent.futures import as_completed, wait

from squall.client import Client
from squall.errors import ElementError, SquallError
from squall.jobs import MapJob

__all__ = ["Client", "MapJob", "SquallError", "ElementError", "wait", "as_completed"]
__version__ = "0.1.0"
