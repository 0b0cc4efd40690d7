"""Fault injection for tests: a TCP proxy that cuts AMQP connections, a private Redis that can be
killed or frozen, router processes, and closing the router's own named broker connection.

None of this touches the shared servers beyond the test's own namespace: the proxy sits in front of
the shared RabbitMQ for the router under test only, the Redis is a private `redis-server` on a free
port, and `close_connection` picks a connection by its unique name.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class TcpProxy:
    """A TCP forwarder on 127.0.0.1 running in its own thread (so blocking test code never stalls it).

    `cut()` aborts every open connection (both sides, like a broken network) and stops listening, so new
    connections are refused; `restore()` listens again on the same port.
    """

    def __init__(self, target_host: str = "127.0.0.1", target_port: int = 5672):
        self.target = (target_host, target_port)
        self.port = 0
        self.accepted = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="tcp-proxy", daemon=True)
        self._server: asyncio.Server | None = None
        self._transports: set[asyncio.BaseTransport] = set()

    def start(self) -> TcpProxy:
        self._thread.start()
        self._call(self._listen())
        return self

    def url(self, user: str = "guest", password: str = "guest") -> str:
        return f"amqp://{user}:{password}@127.0.0.1:{self.port}/"

    def cut(self) -> int:
        """Drop every connection and refuse new ones. Returns how many connections were dropped."""
        dropped: int = self._call(self._cut())
        return dropped

    def restore(self) -> None:
        self._call(self._listen())

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._call(self._cut())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    async def _listen(self) -> None:
        if self._server is not None:
            return
        self._server = await asyncio.start_server(
            self._handle, "127.0.0.1", self.port, reuse_address=True, backlog=100
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def _cut(self) -> int:
        if self._server is not None:
            self._server.close()
            self._server = None
        dropped = len(self._transports)
        for transport in list(self._transports):
            # abort(): no FIN handshake, pending bytes are lost — what a network failure looks like.
            transport.abort()  # type: ignore[attr-defined]
        self._transports.clear()
        return dropped // 2

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        pair = {writer.transport, up_writer.transport}
        self._transports |= pair
        try:
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        finally:
            for t in pair:
                t.abort()  # type: ignore[attr-defined]
            self._transports -= pair

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.transport.abort()  # type: ignore[attr-defined]


class PrivateRedis:
    """A `redis-server` of the test's own on a free port, with an append-only file so that a kill and
    restart keeps what was acknowledged (as a production Redis with persistence would)."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = workdir / "redis.log"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> PrivateRedis:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed; the fault suite needs a private Redis")
        cmd = [
            binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "yes",
            "--appendfsync", "always",
            "--dir", str(self.workdir),
            "--daemonize", "no",
            "--logfile", str(self.log),
        ]  # fmt: skip
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self._ping():
                return self
            time.sleep(0.05)
        raise RuntimeError(f"private redis-server did not start on port {self.port}; see {self.log}")

    def _ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def pause(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


class RouterProcess:
    """`contact-router router --embedded never` (or `serve`: router, API and scheduler) as a child
    process, logging JSON lines to a file."""

    def __init__(self, env: dict[str, str], log: Path, name: str, command: str = "router"):
        self.command = command
        self.env = env
        self.log = log
        self.name = name
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> RouterProcess:
        with self.log.open("ab") as out:
            out.write(f'{{"event": "test_started_{self.name}", "start": {self.starts}}}\n'.encode())
            out.flush()
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "router.cli", self.command, "--embedded", "never"],
                cwd=ROOT,
                env={**os.environ, **self.env},
                stdout=out,
                stderr=out,
            )
        self.starts += 1
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def events(self) -> Iterator[dict[str, Any]]:
        if not self.log.exists():
            return
        for line in self.log.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if isinstance(record, dict):
                    yield record

    def count(self, *events: str) -> Counter[str]:
        wanted = set(events)
        return Counter(e["event"] for e in self.events() if e.get("event") in wanted)


def broker_connections() -> list[tuple[str, str]]:
    """(pid, connection_name) of every connection on the broker, read with rabbitmqctl."""
    out = subprocess.run(
        ["rabbitmqctl", "list_connections", "pid", "client_properties", "-q", "--no-table-headers"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    rows = []
    for line in out.stdout.splitlines():
        pid, _, props = line.partition("\t")
        marker = '{"connection_name","'
        start = props.find(marker)
        if start < 0:
            continue
        name = props[start + len(marker) :].split('"}', 1)[0]
        rows.append((pid.strip(), name))
    return rows


def close_named_connection(name: str, reason: str = "fault test") -> int:
    """Close, from the broker side, the connections named exactly `name` (only ours). Returns how many."""
    closed = 0
    for pid, conn_name in broker_connections():
        if conn_name == name:
            subprocess.run(["rabbitmqctl", "close_connection", pid, reason], capture_output=True, timeout=30)
            closed += 1
    return closed
