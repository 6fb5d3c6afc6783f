"""Answers "Hello, INPUT!" (the Python twin of examples/hello)."""


def handle(input: bytes) -> bytes:
    name = input.decode() if input else "world"
    return f"Hello, {name}!"
