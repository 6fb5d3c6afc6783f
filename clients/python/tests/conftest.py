"""A real node for the tests: `$SQUALL_BIN up --examples` on ephemeral
loopback ports with a temporary data dir (the cargo test that runs pytest
sets SQUALL_BIN to the squall it built)."""

import os
import subprocess
import tempfile
import time
import urllib.request

import pytest


@pytest.fixture(scope="session")
def node_url():
    squall = os.environ.get("SQUALL_BIN")
    if not squall:
        pytest.fail("set SQUALL_BIN to a squall binary (cargo test -p squall-cli --test python_client does)")
    data = tempfile.mkdtemp(prefix="squall-client-test-")
    out = open(os.path.join(data, "out"), "w+")
    proc = subprocess.Popen(
        [squall, "up", "--examples", "--data-dir", os.path.join(data, "d"), "--http", "127.0.0.1:0", "--resp", "127.0.0.1:0"],
        stdout=out,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = None
        for _ in range(1200):
            out.seek(0)
            for line in out.read().splitlines():
                parts = line.split()
                if len(parts) >= 2 and parts[0] == "http":
                    url = parts[1]
            if url:
                break
            assert proc.poll() is None, "the node exited"
            time.sleep(0.05)
        assert url, "the node did not say where it listens"
        for _ in range(1200):
            try:
                with urllib.request.urlopen(url + "/readyz") as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)
