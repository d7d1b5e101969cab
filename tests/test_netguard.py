"""The network guard reaches the tests' children: a child's (and a grandchild's) connect to a non-loopback address is
refused before any packet leaves, and loopback still works. 192.0.2.1 is TEST-NET-1 (RFC 5737): never routed."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

REMOTE = ("192.0.2.1", 80)

CHILD = """
import socket, sys
kind = sys.argv[1]
s = socket.socket()
s.settimeout(2)
try:
    if kind == "connect_ex":
        s.connect_ex(("192.0.2.1", 80))
    else:
        s.connect(("192.0.2.1", 80))
except Exception as e:
    print(type(e).__name__, e)
    sys.exit(3)
print("connected")
"""

LOOPBACK = """
import socket, threading
server = socket.socket()
server.bind(("127.0.0.1", 0))
server.listen(1)
threading.Thread(target=lambda: server.accept()[0].sendall(b"hi"), daemon=True).start()
client = socket.create_connection(server.getsockname(), timeout=5)
print(client.recv(2).decode())
"""


def _python(code: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize("kind", ["connect", "connect_ex"])
def test_a_child_cannot_reach_the_network(kind):
    done = _python(CHILD, kind)
    assert done.returncode == 3, done.stdout + done.stderr
    assert done.stdout.strip() == "NetworkBlocked test tried to reach the network: ('192.0.2.1', 80)"


def test_a_grandchild_is_guarded_too():
    """A child started by a child (a torchrun rank, the doctor's worker) inherits the guard through PYTHONPATH."""
    outer = f"import subprocess, sys; sys.exit(subprocess.run([sys.executable, '-c', {CHILD!r}, 'connect']).returncode)"
    done = _python(outer)
    assert done.returncode == 3 and "NetworkBlocked" in done.stdout, done.stdout + done.stderr


def test_loopback_still_works_in_a_child():
    done = _python(LOOPBACK)
    assert done.returncode == 0 and done.stdout.strip() == "hi", done.stdout + done.stderr


def test_the_test_process_is_guarded():
    import socket

    from tour_netguard import NetworkBlocked

    with socket.socket() as s, pytest.raises(NetworkBlocked):
        s.connect(REMOTE)


def test_the_guard_is_on_the_childrens_path():
    assert os.environ["PYTHONPATH"].split(os.pathsep)[0].endswith(os.path.join("tests", "netguard"))
