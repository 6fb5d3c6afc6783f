#!/usr/bin/env python3
"""Differential fuzz: the same random commands, over four keys, to Redis and
to Squall on one connection each; each pair of replies is compared (set
orders sorted, random picks by their length, OBJECT ENCODING and lex ranges
over unequal scores left out where Redis's answer depends on its layout).
A difference is printed once, with the commands that led to it (V=1), and
the keys are emptied on both sides to go on from the same state.

  redis-server --port 7399 --save "" --appendonly no --dir /tmp &   # server.txt runs SAVE
  squall up --resp 127.0.0.1:7897 ... &
  python3 redis_diff.py 7399 7897 SEED STEPS      (RESP3=1: after HELLO 3;
                                                  STOP=N: the keys before step N)

What it found went into edges.txt, the golden test's script.
Known differences it still prints: INCRBYFLOAT's last digits (Redis adds
in long double); ZUNIONSTORE, ZINTERSTORE, ZINTERCARD and the *SCANs
refusing a bad option before a missing key or one of the wrong type (Redis
looks at the keys first); DBSIZE and KEYS inside MULTI (they run after the
transaction's key commands here).
"""
import os, random, socket, sys

class Conn:
    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port)); self.f = self.s.makefile("rb")
    def cmd(self, *args):
        out = b"*%d\r\n" % len(args)
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out += b"$%d\r\n%s\r\n" % (len(a), a)
        self.s.sendall(out); return self.read()
    def read(self):
        line = self.f.readline()[:-2]; t, rest = line[:1], line[1:]
        if t == b"+": return ("ok", rest)
        if t == b"-": return ("err", rest)
        if t == b":": return ("int", int(rest))
        if t == b"$":
            n = int(rest)
            if n < 0: return None
            d = self.f.read(n + 2)[:-2]; return d
        if t == b"*":
            n = int(rest)
            if n < 0: return None
            return [self.read() for _ in range(n)]
        if t in (b"~", b">"):
            n = int(rest)
            return (t.decode(), sorted([self.read() for _ in range(n)], key=repr))
        if t == b"%":
            n = int(rest)
            return ("%", sorted([(self.read(), self.read()) for _ in range(n)], key=repr))
        if t == b"_": return ("null",)
        if t == b",": return ("double", rest)
        if t == b"#": return ("bool", rest)
        if t == b"(": return ("big", rest)
        if t in (b"=", b"!"):
            n = int(rest); d = self.f.read(n + 2)[:-2]; return (t.decode(), d)
        raise Exception("bad reply %r" % line)

R = random.Random(int(sys.argv[3]) if len(sys.argv) > 3 else 1)
K = ["k0", "k1", "k2", "k3"]
def k(): return R.choice(K)
def v(): return R.choice(["a", "bb", "", "1", "2", "-3", "10", "1.5", "x" * 5, "0", "abc", "9223372036854775807", "-9223372036854775808", "1e5", " 2", "inf"])
def m(): return R.choice(["m0", "m1", "m2", "m3", "a", "b", "c"])
def f(): return R.choice(["f0", "f1", "f2"])
def i(): return str(R.randint(-4, 5)) if R.random() < 0.93 else R.choice(["9223372036854775807", "-9223372036854775808", "99999999999999999999", "1.0", "", " 1"])
def sc(): return R.choice(["1", "2", "-1", "1.5", "0", "3", "inf", "-inf", "+inf", "nan", "x"])
def rng(): return R.choice(["1", "(1", "2", "-inf", "+inf", "(2", "0", "x", "3"])
def lex(): return R.choice(["-", "+", "[a", "(a", "[m1", "(m2", "[c", "a"])
def some(g, lo=1, hi=3): return [g() for _ in range(R.randint(lo, hi))]
def opt(*xs): return list(R.choice(xs)) if R.random() < 0.5 else []

GEN = {
 "SET": lambda: [k(), v()] + opt(["NX"], ["XX"], ["GET"], ["EX", "1000"], ["KEEPTTL"], ["NX", "GET"], ["EX", "0"], ["PX", "x"]),
 "GET": lambda: [k()], "GETSET": lambda: [k(), v()], "GETDEL": lambda: [k()],
 "GETEX": lambda: [k()] + opt(["PERSIST"], ["EX", "1000"], ["EX", "-1"]),
 "APPEND": lambda: [k(), v()], "STRLEN": lambda: [k()], "GETRANGE": lambda: [k(), i(), i()],
 "SETRANGE": lambda: [k(), str(R.randint(-1, 5)), v()], "INCR": lambda: [k()], "DECR": lambda: [k()],
 "INCRBY": lambda: [k(), i()], "DECRBY": lambda: [k(), R.choice([i(), "x", "1.5"])],
 "INCRBYFLOAT": lambda: [k(), R.choice(["1.5", "-2", "x", "1e3", "0.1"])], "SETNX": lambda: [k(), v()],
 "MSET": lambda: sum(([k(), v()] for _ in range(R.randint(1, 3))), []), "MGET": lambda: some(k),
 "MSETNX": lambda: sum(([k(), v()] for _ in range(R.randint(1, 3))), []),
 "DEL": lambda: some(k), "EXISTS": lambda: some(k), "TYPE": lambda: [k()], "UNLINK": lambda: some(k),
 "RENAME": lambda: [k(), k()], "RENAMENX": lambda: [k(), k()], "COPY": lambda: [k(), k()] + opt(["REPLACE"]),
 "EXPIRE": lambda: [k(), R.choice(["1000", "2000", "x"])] + opt(["NX"], ["XX"], ["GT"], ["LT"], ["GT", "LT"]),
 "PERSIST": lambda: [k()], "TTL": lambda: [k()],
 "HSET": lambda: [k()] + sum(([f(), v()] for _ in range(R.randint(1, 2))), []), "HGET": lambda: [k(), f()],
 "HMGET": lambda: [k()] + some(f), "HDEL": lambda: [k()] + some(f), "HLEN": lambda: [k()],
 "HEXISTS": lambda: [k(), f()], "HINCRBY": lambda: [k(), f(), i()], "HINCRBYFLOAT": lambda: [k(), f(), R.choice(["1.5", "x", "2"])],
 "HSETNX": lambda: [k(), f(), v()], "HKEYS": lambda: [k()], "HVALS": lambda: [k()], "HGETALL": lambda: [k()], "HSTRLEN": lambda: [k(), f()],
 "SADD": lambda: [k()] + some(m), "SREM": lambda: [k()] + some(m), "SMEMBERS": lambda: [k()],
 "SISMEMBER": lambda: [k(), m()], "SMISMEMBER": lambda: [k()] + some(m), "SCARD": lambda: [k()],
 "SMOVE": lambda: [k(), k(), m()], "SINTER": lambda: some(k), "SUNION": lambda: some(k), "SDIFF": lambda: some(k),
 "SINTERSTORE": lambda: [k()] + some(k), "SUNIONSTORE": lambda: [k()] + some(k), "SDIFFSTORE": lambda: [k()] + some(k),
 "SINTERCARD": lambda: (lambda ks: [str(len(ks))] + ks + opt(["LIMIT", "1"], ["LIMIT", "0"], ["LIMIT", "-1"]))(some(k)),
 "LPUSH": lambda: [k()] + some(v), "RPUSH": lambda: [k()] + some(v), "LPUSHX": lambda: [k()] + some(v), "RPUSHX": lambda: [k()] + some(v),
 "LPOP": lambda: [k()] + opt([str(R.randint(0, 3))], ["-1"]), "RPOP": lambda: [k()] + opt([str(R.randint(0, 3))]),
 "LRANGE": lambda: [k(), i(), i()], "LLEN": lambda: [k()], "LINDEX": lambda: [k(), i()], "LSET": lambda: [k(), i(), v()],
 "LREM": lambda: [k(), i(), v()], "LTRIM": lambda: [k(), i(), i()],
 "LMOVE": lambda: [k(), k(), R.choice(["LEFT", "RIGHT"]), R.choice(["LEFT", "RIGHT", "UP"])],
 "LINSERT": lambda: [k(), R.choice(["BEFORE", "AFTER", "X"]), v(), v()], "LPOS": lambda: [k(), v()] + opt(["RANK", "-1"], ["COUNT", "0"], ["RANK", "2"], ["MAXLEN", "1"]),
 "RPOPLPUSH": lambda: [k(), k()],
 "ZADD": lambda: [k()] + opt(["NX"], ["XX"], ["GT"], ["LT"], ["CH"], ["INCR"], ["NX", "GT"], ["XX", "CH"]) + sum(([sc(), m()] for _ in range(R.randint(1, 2))), []),
 "ZINCRBY": lambda: [k(), sc(), m()], "ZSCORE": lambda: [k(), m()], "ZMSCORE": lambda: [k()] + some(m),
 "ZRANGE": lambda: R.choice([
     lambda: [k(), i(), i()] + opt(["REV"]) + opt(["WITHSCORES"]),
     lambda: [k(), rng(), rng(), "BYSCORE"] + opt(["REV"]) + opt(["LIMIT", i(), i()]) + opt(["WITHSCORES"]),
     lambda: [k(), lex(), lex(), "BYLEX"] + opt(["REV"]) + opt(["LIMIT", i(), i()]),
 ])(),
 "ZRANK": lambda: [k(), m()], "ZREVRANK": lambda: [k(), m()], "ZREM": lambda: [k()] + some(m), "ZCARD": lambda: [k()],
 "ZCOUNT": lambda: [k(), rng(), rng()], "ZLEXCOUNT": lambda: [k(), lex(), lex()],
 "ZPOPMIN": lambda: [k()] + opt([str(R.randint(0, 3))], ["-1"]), "ZPOPMAX": lambda: [k()] + opt([str(R.randint(0, 3))]),
 "ZRANGESTORE": lambda: [k(), k(), i(), i()] + opt(["REV"]),
 "ZUNIONSTORE": lambda: (lambda ks: [k(), str(len(ks))] + ks + opt(["WEIGHTS"] + ["2"] * len(ks)) + opt(["AGGREGATE", R.choice(["MIN", "MAX", "SUM", "X"])]))(some(k)),
 "ZINTERSTORE": lambda: (lambda ks: [k(), str(len(ks))] + ks + opt(["AGGREGATE", R.choice(["MIN", "MAX"])]))(some(k)),
 "ZRANGEBYSCORE": lambda: [k(), rng(), rng()] + opt(["WITHSCORES"]) + opt(["LIMIT", i(), i()]),
 "ZREVRANGE": lambda: [k(), i(), i()] + opt(["WITHSCORES"]),
 "ZREVRANGEBYSCORE": lambda: [k(), rng(), rng()] + opt(["WITHSCORES"]),
 "ZREMRANGEBYRANK": lambda: [k(), i(), i()], "ZREMRANGEBYSCORE": lambda: [k(), rng(), rng()],
 "ZRANGEBYLEX": lambda: [k(), lex(), lex()],
 "DBSIZE": lambda: [], "EXISTS2": None,
 "SETEX": lambda: [k(), R.choice(["1000", "0", "-1", "x"]), v()], "PSETEX": lambda: [k(), R.choice(["100000", "0", "x"]), v()],
 "TOUCH": lambda: some(k), "OBJECT": lambda: [R.choice(["ENCODING", "encoding"]), k()],
 "HRANDFIELD": lambda: [k()] + opt(["0"], ["-2"]), "SRANDMEMBER": lambda: [k()] + opt(["0"], ["-3"]),
 "ZRANDMEMBER": lambda: [k()] + opt(["0"]),
 "ZINTER": lambda: (lambda ks: [str(len(ks))] + ks + opt(["WITHSCORES"]))(some(k)),
 "ZUNION": lambda: (lambda ks: [str(len(ks))] + ks + opt(["WITHSCORES"]) )(some(k)),
 "ZDIFF": lambda: (lambda ks: [str(len(ks))] + ks + opt(["WITHSCORES"]))(some(k)),
 "ZDIFFSTORE": lambda: (lambda ks: [k(), str(len(ks))] + ks)(some(k)),
 "ZINTERCARD": lambda: (lambda ks: [str(len(ks))] + ks + opt(["LIMIT", "1"]))(some(k)),
 "ZREVRANGEBYLEX": lambda: [k(), lex(), lex()], "ZREMRANGEBYLEX": lambda: [k(), lex(), lex()],
 "LMPOP": lambda: (lambda ks: [str(len(ks))] + ks + [R.choice(["LEFT", "RIGHT", "X"])] + opt(["COUNT", R.choice(["1", "2", "0"])]))(some(k)),
 "ZMPOP": lambda: (lambda ks: [str(len(ks))] + ks + [R.choice(["MIN", "MAX", "X"])] + opt(["COUNT", R.choice(["1", "2", "0"])]))(some(k)),
 "BLPOP": lambda: some(k) + ["0.01"], "BRPOP": lambda: some(k) + ["0.01"], "BZPOPMIN": lambda: some(k) + ["0.01"],
 "BLMOVE": lambda: [k(), k(), R.choice(["LEFT", "RIGHT"]), R.choice(["LEFT", "RIGHT"]), "0.01"],
 "RANDOMKEY": lambda: [], "SUBSTR": lambda: [k(), i(), i()], "GETRANGE2": None,
 "MULTI_": None,
 "PTTL": lambda: [k()], "EXPIRETIME": lambda: [k()], "PEXPIRETIME": lambda: [k()],
 "PEXPIRE": lambda: [k(), R.choice(["1000000", "-5", "x"])] + opt(["NX"], ["GT"], ["LT"]),
 "EXPIREAT": lambda: [k(), R.choice(["4000000000", "1", "0"])] + opt(["XX"], ["GT"]),
 "SPOP": lambda: [k()] + opt([R.choice(["0", "1", "-1", "10"])]),
 "SCARD2": None,
 "HRANDFIELD": lambda: [k()] + opt(["0"], ["-2"], ["0", "WITHVALUES"], ["5", "WITHVALUES"]),
 "ZRANDMEMBER": lambda: [k()] + opt(["0"], ["-2", "WITHSCORES"], ["5", "WITHSCORES"]),
 "KEYS": lambda: [R.choice(["*", "k*", "k[01]", "?1", "nomatch"])],
 "SSCAN": lambda: [k(), "0", "COUNT", "1000"], "HSCAN": lambda: [k(), "0", "COUNT", "1000"],
 "ZSCAN": lambda: [k(), "0", "COUNT", "1000"],
 "SETKEEP": None,


}
GEN.pop("EXISTS2"); GEN.pop("SCARD2"); GEN.pop("SETKEEP"); GEN.pop("GETRANGE2"); GEN.pop("MULTI_")
LEX = {"ZRANGEBYLEX", "ZLEXCOUNT", "ZREMRANGEBYLEX", "ZREVRANGEBYLEX"}
RANDOM = {"HRANDFIELD", "SRANDMEMBER", "ZRANDMEMBER", "RANDOMKEY", "SPOP"}
UNORDERED = {"ZDIFF2", "KEYS", "SMEMBERS", "SINTER", "SUNION", "SDIFF", "HKEYS", "HVALS", "KEYS"}
def norm(name, rep):
    if name in RANDOM:
        if isinstance(rep, list): return ("list", len(rep))
        if isinstance(rep, bytes): return "bytes"
    if name in UNORDERED and isinstance(rep, list): return sorted(rep, key=repr)
    if name == "HGETALL" and isinstance(rep, list):
        return sorted(zip(rep[::2], rep[1::2]), key=repr)
    if name in ("TTL", "PTTL", "EXPIRETIME", "PEXPIRETIME") and isinstance(rep, tuple) and rep[0] == "int" and rep[1] > 900: return ("int", "big")
    if name in ("SSCAN", "HSCAN", "ZSCAN") and isinstance(rep, list) and len(rep) == 2 and isinstance(rep[1], list):
        items = rep[1]
        if name != "SSCAN": items = sorted(zip(items[::2], items[1::2]), key=repr)
        else: items = sorted(items, key=repr)
        return (rep[0], items)
    return rep

a, b = Conn(int(sys.argv[1])), Conn(int(sys.argv[2]))
n = int(sys.argv[4]) if len(sys.argv) > 4 else 2000
a.cmd("FLUSHALL"); b.cmd("FLUSHALL")
if os.environ.get("RESP3"):
    a.cmd("HELLO", "3"); b.cmd("HELLO", "3")
VERBOSE = os.environ.get('V')
hist = []
names = sorted(GEN); bad = 0; seen = set()
for step in range(n):
    name = R.choice(names); args = GEN[name]()
    if R.random() < 0.03 and args: args = args[:-1]
    if R.random() < 0.05:
        block = [(name, args)] + [(nm, GEN[nm]()) for nm in (R.choice(names) for _ in range(R.randint(0, 2)))]
        block = [(nm, ar) for nm, ar in block if nm not in RANDOM and nm not in ("SPOP",) and nm not in LEX and "BYLEX" not in ar and not nm.startswith("B") and nm not in ("DBSIZE", "RANDOMKEY")]
        name, args = "MULTI", []
        ra, rb = [a.cmd("MULTI")], [b.cmd("MULTI")]
        for nm, ar in block:
            ra.append(a.cmd(nm, *ar)); rb.append(b.cmd(nm, *ar))
        ra.append(a.cmd("EXEC")); rb.append(b.cmd("EXEC"))
        for r in (ra, rb):
            if isinstance(r[-1], list) and len(r[-1]) == len(block):
                r[-1] = [norm(nm, x) for (nm, _), x in zip(block, r[-1])]
        hist.append("MULTI " + " ; ".join(f"{nm} {' '.join(ar)}" for nm, ar in block))
        if ra != rb and (str(ra), str(rb)) not in seen:
            seen.add((str(ra), str(rb))); bad += 1
            print(f"#{step} {hist[-1]}\n   redis:  {ra!r}\n   squall: {rb!r}")
            for key in K:
                a.cmd("DEL", key); b.cmd("DEL", key)
        continue
    if os.environ.get("STOP") and step == int(os.environ["STOP"]):
        for key in K:
            print(key, a.cmd("TYPE", key), a.cmd("GET", key), "|", b.cmd("TYPE", key), b.cmd("GET", key), b.cmd("OBJECT", "ENCODING", key))
    hist.append(f"{name} {' '.join(args)}")
    ra, rb = a.cmd(name, *args), b.cmd(name, *args)
    if name in LEX or (name == "ZRANGE" and "BYLEX" in args):
        sc_ = a.cmd("ZRANGE", args[0], "0", "-1", "WITHSCORES")
        if isinstance(sc_, list):
            scores = [x[1] for x in sc_] if sc_ and isinstance(sc_[0], list) else sc_[1::2]
            if len(set(map(repr, scores))) > 1:
                # Lex ranges over unequal scores are Redis's layout's to
                # answer; a removal by one leaves the two apart: start over.
                a.cmd("DEL", args[0]); b.cmd("DEL", args[0])
                continue
    if name == "SPOP" and args:
        a.cmd("DEL", args[0]); b.cmd("DEL", args[0])
    if norm(name, ra) != norm(name, rb):
        sig = (name, str(ra)[:40])
        if sig not in seen:
            seen.add(sig); bad += 1
            print(f"#{step} {name} {' '.join(args)}\n   redis:  {ra!r}\n   squall: {rb!r}")
            if VERBOSE: print("   history: " + " | ".join(hist[-60:]))
        # resync state
        for key in K:
            a.cmd("DEL", key); b.cmd("DEL", key)
        hist.clear()
print(f"{n} steps, {bad} distinct differences")
