"""Adds one to the counter named by the input (default `visits`) and answers
its new value: the same counter as examples/counter, GET-able from Redis."""

from squall_sdk import log, store


def handle(input: bytes) -> bytes:
    key = input or b"visits"
    if len(key) > 512:
        raise ValueError(f"a key of {len(key)} bytes is too long for this counter (512 at most)")
    n = store.incr(key)
    log.info("counted", key.decode(errors="replace"), n)
    return str(n)
