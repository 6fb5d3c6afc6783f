"""Writes crates/gateway/src/command_table.tsv from what Redis answers to
COMMAND INFO for each command in Squall's COMMANDS table. From the
repository root:

  redis-server --port 7399 --save "" --appendonly no --dir /tmp &   # server.txt runs SAVE
  python3 crates/cli/tests/data/record_command_table.py 7399
"""
import re, socket, sys

src = open("crates/gateway/src/commands.rs").read()
block = src[src.index("pub const COMMANDS"):]
names = re.findall(r'\("([a-z_\-|]+)", (-?\d+)\)', block[: block.index("];")])


class Conn:
    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port))
        self.f = self.s.makefile("rb")

    def cmd(self, *args):
        self.s.sendall(("*%d\r\n" % len(args) + "".join("$%d\r\n%s\r\n" % (len(a), a) for a in args)).encode())
        return self.read()

    def read(self):
        line = self.f.readline()[:-2]
        t, rest = line[:1], line[1:]
        if t == b"+":
            return rest.decode()
        if t == b"-":
            raise Exception(rest)
        if t == b":":
            return int(rest)
        if t == b"$":
            n = int(rest)
            return None if n < 0 else self.f.read(n + 2)[:-2].decode()
        n = int(rest)
        return None if n < 0 else [self.read() for _ in range(n)]


c = Conn(int(sys.argv[1]))
rows = [
    "# What Redis 7.0.15 on this machine answers to COMMAND INFO for each command Squall",
    "# serves: name, flags, first key, last key, step, ACL categories (tab-separated).",
    "# Regenerate with crates/cli/tests/data/record_command_table.py.",
]
for name, _ in names:
    info = c.cmd("COMMAND", "INFO", name)[0]
    _, _, flags, first, last, step, acl = info[:7]
    rows.append("\t".join([name, ",".join(flags), str(first), str(last), str(step), ",".join(acl)]))
open("crates/gateway/src/command_table.tsv", "w").write("\n".join(rows) + "\n")
