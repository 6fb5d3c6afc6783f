"""Records Redis's exact replies to command scripts, as JSON lines, for the
golden test (crates/cli/tests/redis_golden.rs). From the repository root:

  redis-server --port 7399 --save "" --appendonly no --dir /tmp &   # server.txt runs SAVE
  cd crates/cli/tests/data && python3 record_redis_replies.py 7399 redis_7.0_replies.jsonl \
      lists.txt zsets.txt zsets_resp3.txt edges.txt bits.txt hll.txt server.txt sort.txt
"""
import json, socket, sys, time
port = int(sys.argv[1])
out = open(sys.argv[2], "w")
for path in sys.argv[3:]:
    s = socket.create_connection(("127.0.0.1", port))
    for line in open(path):
        line = line.strip()
        if not line or line.startswith("object encoding"):
            continue
        args = line.split(" ")
        s.sendall((f"*{len(args)}\r\n" + "".join(f"${len(a)}\r\n{a}\r\n" for a in args)).encode())
        time.sleep(0.03)
        s.settimeout(0.3)
        data = b""
        try:
            while True:
                d = s.recv(65536)
                if not d:
                    break
                data += d
                if len(d) < 65536:
                    break
        except socket.timeout:
            pass
        out.write(json.dumps({"script": path.split("/")[-1], "args": args, "reply": data.decode("latin-1")}) + "\n")
    s.close()
