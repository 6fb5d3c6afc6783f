"""The Python client against a real node."""

import asyncio
import json
import urllib.request

import pytest

import squall


@pytest.fixture(scope="module")
def client(node_url):
    with squall.Client(node_url) as c:
        yield c


def inc(x):
    return x + 1


def test_map_over_10000_inputs_with_a_plain_function_gives_results_in_order(client):
    offset = 10

    def shifted(x):
        return inc(x) + offset

    job = client.map(shifted, range(10_000), progress=False)
    assert job.chunk_size > 1
    assert job.results() == [x + 11 for x in range(10_000)]
    # A generator streams (its length is not known) and gives the same.
    assert list(client.map(inc, (x for x in range(1000)), chunk_size=64, progress=False)) == list(range(1, 1001))


def test_a_failing_element_is_retried_and_reported(client, node_url):
    def picky(x):
        if x == 13:
            raise ValueError(f"{x} is unlucky")
        return -x

    job = client.map(picky, range(40), retries=1, chunk_size=10, progress=False)
    with pytest.raises(squall.ElementError) as e:
        job.results()
    assert e.value.index == 13 and e.value.code == "function_error"
    assert "ValueError: 13 is unlucky" in e.value.message
    out = job.results(return_exceptions=True)
    assert [v for i, v in enumerate(out) if i != 13] == [-x for x in range(40) if x != 13]
    assert isinstance(out[13], squall.ElementError)
    # Its chunk ran twice (retries=1), then 13 alone twice: four failed runs.
    with urllib.request.urlopen(f"{node_url}/v1/functions/{job.function}/logs?limit=100") as r:
        logs = json.loads(r.read())
    failed = [i for i in logs["logs"] if i["status"] == "function_error"]
    assert len(failed) == 4, logs


def test_submit_gives_futures(client):
    def add(a, b, scale=1):
        return (a + b) * scale

    futures = [client.submit(add, i, i, scale=10) for i in range(8)]
    assert sorted(f.result() for f in squall.as_completed(futures)) == [20 * i for i in range(8)]
    assert client.submit("inc", "41").result() == b"42"
    bad = client.submit("no-such-function", "1")
    with pytest.raises(squall.SquallError) as e:
        bad.result()
    assert e.value.code == "function_not_found" and e.value.status == 404
    fs = client.map(inc, range(20), progress=False).futures()
    assert [f.result() for f in fs] == list(range(1, 21))


def test_pickles_carry_python_values(client):
    def describe(v):
        return (type(v).__name__, sorted(v) if isinstance(v, (set, frozenset)) else v)

    inputs = [{1, 2}, (3, "x"), b"raw", 1.5]
    out = client.map(describe, inputs, serializer="pickle", progress=False).results()
    assert out == [("set", [1, 2]), ("tuple", (3, "x")), ("bytes", b"raw"), ("float", 1.5)]


def test_the_progress_bar_writes_to_a_non_terminal(client, capfd):
    client.map(inc, range(300), progress=True).results()
    err = capfd.readouterr().err
    assert "300/300" in err and "map py-inc-" in err, err


def test_invoke_deploy_and_errors(client):
    assert client.invoke("inc", "41") == b"42"
    assert asyncio.run(client.invoke_async("inc", b"1")) == b"2"
    with pytest.raises(squall.SquallError) as e:
        client.invoke("inc", "not a number")
    assert e.value.code == "function_error" and e.value.status == 422

    def shout(data):
        return data.upper()

    meta = client.deploy("shout", shout)
    assert meta["name"] == "shout"
    assert client.invoke("shout", b"quiet") == b"QUIET"
    with pytest.raises(squall.SquallError) as e:
        client.map(lambda x: x, [1])
    assert e.value.code == "cannot_ship"


def test_kv_types_round_trip(client):
    kv = client.kv
    kv.put("greeting", "hello")
    assert kv.get("greeting") == b"hello"
    kv.put(b"raw", b"\x00\xff")
    assert kv.get("raw") == b"\x00\xff"
    assert kv.get("missing") is None
    assert kv.incr("hits") == 1 and kv.incr("hits", 41) == 42 and kv.incr("hits", -2) == 40
    assert kv.counter("hits") == 40 and kv.get("hits") == 40 and kv.counter("nothing") == 0
    assert kv.sadd("tags", "fast", "durable", "fast") == 2
    assert kv.srem("tags", "durable", "nope") == 1
    assert kv.smembers("tags") == {"fast"} and kv.get("tags") == {"fast"}
    assert kv.hset("user:1", {"name": "ada"}, lang="en") == 2
    assert kv.hdel("user:1", "lang") == 1
    assert kv.hgetall("user:1") == {"name": "ada"}
    with pytest.raises(squall.SquallError) as e:
        kv.incr("tags")
    assert e.value.code == "wrong_type"
    assert kv.delete("greeting") is True and kv.delete("greeting") is False
    keys = set(kv.scan("user:")) | set(kv.scan("ta"))
    assert keys == {"user:1", "tags"}


def handle(x):
    return x * 2


def test_any_function_name_ships_and_bad_arguments_are_refused(client):
    # A function named like the generated wrapper is still the one called.
    assert client.map(handle, [1, 2, 3], progress=False).results() == [2, 4, 6]
    with pytest.raises(ValueError):
        client.map(inc, [1], chunk_size=0)
    with pytest.raises(ValueError):
        client.map(inc, [1], serializer="yaml")
    job = client.map(inc, range(10), progress=False)
    job.results()
    with pytest.raises(RuntimeError):
        job.futures()
