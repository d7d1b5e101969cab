"""The tests' network guard, in one place: non-loopback connections are refused before any packet leaves.

conftest.py installs it in the test process; sitecustomize.py (this folder, which conftest puts first on the
children's PYTHONPATH) installs it in every Python child the tests start: the CLI, the doctor's workers, torchrun
ranks, export's fresh process. Set TOUR_NETGUARD=0 to turn it off in children.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import sys


class NetworkBlocked(RuntimeError):
    pass


def is_local(address) -> bool:
    """Loopback addresses, AF_UNIX paths and the like. A host name counts as remote: resolving it is traffic."""
    if not isinstance(address, tuple):  # AF_UNIX paths and the like
        return True
    host = address[0]
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return False


def check(address) -> None:
    if not is_local(address):
        log = os.environ.get("TOUR_NETGUARD_LOG")  # a file that collects every refusal, for debugging a child
        if log:
            with open(log, "a") as f:
                f.write(f"{os.getpid()} {' '.join(sys.argv)[:200]}: refused {address!r}\n")
        raise NetworkBlocked(f"test tried to reach the network: {address!r}")


def guarded_methods(cls=socket.socket) -> dict:
    """connect / connect_ex that refuse a remote address, then call the real ones: {name: replacement}."""
    real_connect, real_connect_ex = cls.connect, cls.connect_ex

    def connect(self, address):
        check(address)
        return real_connect(self, address)

    def connect_ex(self, address):
        check(address)
        return real_connect_ex(self, address)

    return {"connect": connect, "connect_ex": connect_ex}


def install(cls=socket.socket) -> None:
    """Patch the socket class for the rest of this process (a child's whole life)."""
    if getattr(cls, "_tour_netguard", False):
        return
    for name, method in guarded_methods(cls).items():
        setattr(cls, name, method)
    cls._tour_netguard = True
