"""Squall through redis-py, as an application uses it: every assertion here
also holds against Redis 7 (run it with a Redis port to check the script).

Usage: python redis_py_check.py PORT
"""

import sys
import threading
import time

import redis
from redis.exceptions import ResponseError

port = int(sys.argv[1])
r = redis.Redis(port=port, decode_responses=True)
r.flushall()


def error_of(f, *args, **kwargs):
    try:
        f(*args, **kwargs)
    except ResponseError as e:
        return str(e)
    raise AssertionError(f"no error from {f.__name__}{args}")


# Strings.
assert r.set("k", "v") is True
assert r.set("k", "w", nx=True) is None
assert r.set("k", "w", xx=True, get=True) == "v"
assert r.get("k") == "w"
assert r.set("lock", "me", nx=True, px=30000) is True
assert r.set("lock", "you", nx=True, px=30000) is None
assert 0 < r.pttl("lock") <= 30000
assert r.getset("k", "x") == "w"
assert r.getdel("k") == "x" and r.get("k") is None
assert r.setnx("k", "1") is True and r.setnx("k", "2") is False
r.set("n", 10)
assert r.incrbyfloat("n", 0.5) == 10.5
assert r.incr("c") == 1 and r.incrby("c", 41) == 42 and r.decr("c") == 41
assert r.append("s", "ab") == 2 and r.append("s", "cd") == 4
assert r.strlen("s") == 4 and r.getrange("s", 1, 2) == "bc"
assert r.setrange("s", 2, "XY") == 4 and r.get("s") == "abXY"
assert r.getex("s", ex=100) == "abXY" and 0 < r.ttl("s") <= 100
assert r.mset({"m1": "a", "m2": "b"}) is True
assert r.mget("m1", "m2", "m3") == ["a", "b", None]
assert "not an integer" in error_of(r.incr, "s")

# Hashes.
assert r.hset("h", mapping={"a": "1", "b": "2"}) == 2
assert r.hgetall("h") == {"a": "1", "b": "2"}
assert r.hincrby("h", "a", 5) == 6
assert r.hmget("h", ["a", "z"]) == ["6", None]
assert not r.hsetnx("h", "a", "x") and r.hsetnx("h", "c", "3")
assert sorted(r.hkeys("h")) == ["a", "b", "c"] and sorted(r.hvals("h")) == ["2", "3", "6"]
assert r.hexists("h", "b") and not r.hexists("h", "z")
assert r.hstrlen("h", "a") == 1 and r.hlen("h") == 3
assert r.hdel("h", "a", "z") == 1
assert "WRONGTYPE" in error_of(r.get, "h")

# Sets.
r.sadd("s1", "a", "b", "c")
r.sadd("s2", "b", "c", "d")
assert r.sinter("s1", "s2") == {"b", "c"}
assert r.sunion("s1", "s2") == {"a", "b", "c", "d"}
assert r.sdiff("s1", "s2") == {"a"}
assert r.sintercard(2, ["s1", "s2"]) == 2
assert r.sinterstore("s3", ["s1", "s2"]) == 2 and r.smembers("s3") == {"b", "c"}
assert r.smove("s1", "s2", "a") is True and r.smove("s1", "s2", "zz") is False
assert [bool(x) for x in r.smismember("s2", ["a", "z"])] == [True, False]
assert r.spop("s3") in {"b", "c"} and r.scard("s3") == 1
assert r.srandmember("s2") in {"a", "b", "c", "d"}
assert len(r.srandmember("s2", 10)) == 4 and len(r.srandmember("s2", -10)) == 10

# Keys.
assert r.rename("s2", "s4") is True and r.exists("s2") == 0
assert r.copy("s4", "s5") is True and r.copy("s4", "s5") is False
assert r.type("s5") == "set" and r.type("nothing") == "none"
assert r.expire("s5", 100) is True and r.expire("s5", 50, gt=True) is False
assert r.expire("s5", 50, lt=True) is True and 0 < r.ttl("s5") <= 50
assert r.persist("s5") is True and r.ttl("s5") == -1
assert "GT and LT options at the same time are not compatible" in error_of(
    r.execute_command, "EXPIRE", "s5", "1", "LT", "GT"
)
assert {"s4", "s5"} <= set(r.scan_iter(match="s*"))
r.sadd("scanned", *range(300))
assert sorted(int(m) for m in r.sscan_iter("scanned", count=20)) == list(range(300))
r.hset("hscanned", mapping={f"f{i}": i for i in range(200)})
assert dict(r.hscan_iter("hscanned", match="f1*")) == {f"f{i}": str(i) for i in range(200) if str(i).startswith("1")}
r.zadd("zscanned", {f"m{i}": i / 2 for i in range(200)})
assert dict(r.zscan_iter("zscanned")) == {f"m{i}": i / 2 for i in range(200)}
assert r.delete("scanned", "hscanned", "zscanned") == 3
assert r.unlink("s4", "s5", "none") == 2
assert r.dbsize() == len(r.keys("*"))

# Pipelines and transactions.
with r.pipeline(transaction=False) as p:
    assert p.set("a", 1).incr("a").get("a").execute() == [True, 2, "2"]
with r.pipeline() as p:
    assert p.incr("a").incr("a").execute() == [3, 4]


def add_one(pipe):
    v = int(pipe.get("ctr") or 0)
    pipe.multi()
    pipe.set("ctr", v + 1)


def worker():
    conn = redis.Redis(port=port, decode_responses=True)
    for _ in range(25):
        conn.transaction(add_one, "ctr")


threads = [threading.Thread(target=worker) for _ in range(4)]
for t in threads:
    t.start()
for t in threads:
    t.join()
assert r.get("ctr") == "100", r.get("ctr")

# Databases.
r9 = redis.Redis(port=port, db=9, decode_responses=True)
r9.set("where", "nine")
assert r.get("where") is None and r9.get("where") == "nine"
r9.flushdb()
assert r9.dbsize() == 0


def messages(p, n, timeout=5.0):
    got = []
    deadline = time.time() + timeout
    while len(got) < n and time.time() < deadline:
        m = p.get_message(timeout=0.1)
        if m is not None:
            got.append(m)
    return got


# Pub/sub.
p = r.pubsub()
p.subscribe("news")
p.psubscribe("n*")
assert [m["type"] for m in messages(p, 2)] == ["subscribe", "psubscribe"]
assert r.publish("news", "hi") == 2
got = messages(p, 2)
assert {(m["type"], m["channel"], m["data"]) for m in got} == {("message", "news", "hi"), ("pmessage", "news", "hi")}
assert r.pubsub_numsub("news") == [("news", 1)] and r.pubsub_numpat() == 1
assert r.pubsub_channels() == ["news"]
p.close()

# Keyspace notifications.
r.config_set("notify-keyspace-events", "KEA")
p = r.pubsub()
p.psubscribe("__keyevent@0__:*")
messages(p, 1)
r.set("watched", "1")
r.delete("watched")
got = messages(p, 2)
assert [(m["channel"], m["data"]) for m in got] == [("__keyevent@0__:set", "watched"), ("__keyevent@0__:del", "watched")]
p.close()
r.config_set("notify-keyspace-events", "")

# RESP3.
r3 = redis.Redis(port=port, protocol=3, decode_responses=True)
r3.hset("h3", mapping={"x": "1"})
assert r3.hgetall("h3") == {"x": "1"}
assert r3.smembers("s1") == {"b", "c"}
p3 = r3.pubsub()
p3.subscribe("c3")
messages(p3, 1)
assert r.publish("c3", "pushed") == 1
got = messages(p3, 1)
assert [(m["type"], m["data"]) for m in got] == [("message", "pushed")], got
p3.close()

# Server.
assert r.client_setname("py") and r.client_getname() == "py"
assert any(c.get("name") == "py" for c in r.client_list())
assert r.info("server")["redis_version"]
assert "used_memory" in r.info("memory")
assert r.ping() is True and r.echo("e") == "e"
assert r.time()[0] > 1_600_000_000
r.flushall()
assert r.dbsize() == 0
print("ok")
