"""A Redis Cluster of the tests' own: three masters on free loopback ports, started from the machine's
`redis-server` and joined with `redis-cli --cluster create`, each with an append-only file so that a
master killed and restarted keeps what it acknowledged (as production's AOF does).

The suite starts one per session when a test asks for it (fixture `redis_cluster` in tests/conftest.py)
and stops it at the end; a test that kills a master restarts it before it returns.
"""

from __future__ import annotations

import random
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import redis

MASTERS = 3


def _binary(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(
            f"{name} is not installed: the Redis Cluster tests need redis-server and redis-cli "
            "(Debian: apt-get install redis-server redis-tools)"
        )
    return found


def _free_node_port() -> int:
    """A free port whose cluster bus port (+10000) is free too and exists: below the ephemeral range."""
    for _ in range(200):
        port = random.randint(20000, 29999)
        try:
            for p in (port, port + 10000):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", p))
        except OSError:
            continue
        return port
    raise RuntimeError("no free pair of ports for a Redis Cluster node in 20000-39999")


def _answers(port: int, *command: str) -> bytes | None:
    try:
        reply: bytes = redis.Redis(port=port, socket_timeout=1).execute_command(*command)
        return reply
    except redis.RedisError:
        return None


class RedisClusterNodes:
    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.ports = [_free_node_port() for _ in range(MASTERS)]
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    @property
    def url(self) -> str:
        """The service's form (router/redis/client.py): every seed node, comma-separated."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in self.ports) + "/"

    def start(self) -> RedisClusterNodes:
        for port in self.ports:
            self._start_node(port)
        subprocess.run(
            [_binary("redis-cli"), "--cluster", "create", *(f"127.0.0.1:{p}" for p in self.ports),
             "--cluster-replicas", "0", "--cluster-yes"],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        self.wait_ok()
        return self

    def _start_node(self, port: int) -> None:
        node_dir = self.workdir / str(port)
        node_dir.mkdir(parents=True, exist_ok=True)
        cmd = [
            _binary("redis-server"),
            "--port", str(port),
            "--bind", "127.0.0.1",
            "--cluster-enabled", "yes",
            "--cluster-config-file", str(node_dir / "nodes.conf"),
            "--cluster-node-timeout", "2000",
            "--save", "",
            "--appendonly", "yes",
            "--appendfsync", "everysec",
            "--dir", str(node_dir),
            "--daemonize", "no",
            "--logfile", str(node_dir / "redis.log"),
        ]  # fmt: skip
        self.procs[port] = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if _answers(port, "PING"):
                return
            time.sleep(0.05)
        raise RuntimeError(f"redis-server (cluster node) did not start on port {port}; see {node_dir}")

    def wait_ok(self, timeout: float = 30) -> None:
        """Until every node says the cluster is whole (all slots served)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(b"cluster_state:ok" in (_answers(p, "CLUSTER", "INFO") or b"") for p in self.ports):
                return
            time.sleep(0.1)
        raise RuntimeError(f"the test Redis Cluster is not ok after {timeout}s; see {self.workdir}")

    def kill(self, index: int) -> None:
        proc = self.procs[self.ports[index]]
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    def restart(self, index: int) -> None:
        self._start_node(self.ports[index])
        self.wait_ok()

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(self.workdir, ignore_errors=True)
