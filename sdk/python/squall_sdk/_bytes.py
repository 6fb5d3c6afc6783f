from typing import Union

Bytes = Union[bytes, bytearray, memoryview, str, int]


def b(v: Bytes) -> bytes:
    """Bytes as they are, a str as UTF-8, an int as its decimal digits."""
    if isinstance(v, bytes):
        return v
    if isinstance(v, (bytearray, memoryview)):
        return bytes(v)
    if isinstance(v, str):
        return v.encode()
    if isinstance(v, int) and not isinstance(v, bool):
        return str(v).encode()
    raise TypeError(f"expected bytes, str or int, not {type(v).__name__}")
