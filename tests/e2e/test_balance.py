"""End to end: connections opened together spread evenly over `bandits serve`'s workers."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest

from tests.e2e.test_pinning import _API_ONLY, _database, _workers
from tests.servers import running_server

pytestmark = pytest.mark.e2e

CONNECTIONS = 16


def _established(port: int) -> set[int]:
    """Socket inodes of the machine's established TCP connections whose local port is ``port``."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not os.path.exists(table):
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "01":
                inodes.add(int(fields[9]))
    return inodes


def _sockets(pid: int) -> set[int]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:  # closed meanwhile
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[len("socket:["):-1]))
    return inodes


def test_connections_opened_together_are_shared_between_the_workers(tmp_path):
    with running_server(_database(tmp_path), tmp_path, *_API_ONLY) as (base, arbiter):
        port = int(base.rsplit(":", 1)[1])
        time.sleep(2.5)  # both workers' loops have turned (each turns at least once a second)
        clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(CONNECTIONS)]
        try:
            for client in clients:  # a keep-alive request on each, answered
                client.sendall(b"GET /healthz HTTP/1.1\r\nHost: bandits\r\n\r\n")
            for client in clients:
                assert client.recv(4096).startswith(b"HTTP/1.1 200")
            established = _established(port)
            held = [len(_sockets(pid) & established) for pid in _workers(arbiter.pid)]
        finally:
            for client in clients:
                client.close()
    assert sum(held) == CONNECTIONS
    assert min(held) >= CONNECTIONS // 2 - 2, held
