"""Fixtures of the Open Klant export tests: one contract stub per tenant (each municipality has its own
Open Klant), a rules directory whose tenants point at them, and `contact-router export openklant` as a
real process that a test can kill and start again."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aio_pika
import pytest

from router.core import topology
from router.core.topology import Names
from tests.conftest import AMQP_URL, REDIS_URL, RULES
from tests.openklant.stub import OpenKlantStub

TENANTS = ("ommen", "coevorden")
TOKENS = {"ommen": "ommen-openklant-token", "coevorden": "coevorden-openklant-token"}


@pytest.fixture
async def stubs() -> AsyncIterator[dict[str, OpenKlantStub]]:
    started = {t: await OpenKlantStub(token=TOKENS[t]).start() for t in TENANTS}
    yield started
    for s in started.values():
        await s.close()


def write_rules(target: Path, stubs: dict[str, OpenKlantStub], extra: str = "") -> Path:
    """The project's rules, with an `openklant:` section for each tenant that has a stub."""
    target.mkdir(parents=True, exist_ok=True)
    for file in RULES.glob("*.yaml"):
        if file.name.startswith("_"):
            continue
        text = file.read_text(encoding="utf-8")
        if file.stem in stubs:
            text += (
                f"\nopenklant:\n  base_url: {stubs[file.stem].url}\n"
                "  actors: {kcc: KCC}\n  concurrency: 8\n  timeout: 5\n" + extra
            )
        (target / file.name).write_text(text, encoding="utf-8")
    return target


@pytest.fixture
def export_rules(tmp_path: Path, stubs: dict[str, OpenKlantStub]) -> Path:
    return write_rules(tmp_path / "rules", stubs)


class ExporterProcess:
    """`contact-router export openklant` in a process of its own; stderr (its logs) to a file."""

    def __init__(self, env: dict[str, str], log: Path):
        self.env = env
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        with self.log.open("ab") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "router.cli", "export", "openklant"],
                env=self.env,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(40)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(10)

    def logs(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace") if self.log.exists() else ""


def exporter_env(namespace: str, rules: Path) -> dict[str, str]:
    return {
        **os.environ,
        "AMQP_URL": AMQP_URL,
        "REDIS_URL": REDIS_URL,
        "NAMESPACE": namespace,
        "RULES_DIR": str(rules),
        "LOG_LEVEL": "info",
        "LOG_FORMAT": "json",
        **{f"OPENKLANT_TOKEN_{t.upper()}": token for t, token in TOKENS.items()},
    }


@pytest.fixture
async def exporter(
    namespace: str, export_rules: Path, tmp_path: Path, amqp: aio_pika.abc.AbstractConnection
) -> AsyncIterator[ExporterProcess]:
    proc = ExporterProcess(exporter_env(namespace, export_rules), tmp_path / "exporter.log")
    yield proc
    proc.stop()
    await delete_export_topology(amqp, Names(namespace))


async def delete_export_topology(conn: aio_pika.abc.AbstractConnection, names: Names) -> None:
    channel = await conn.channel()
    for q in (*(names.openklant_queue(t) for t in TENANTS), names(topology.OPENKLANT_DEAD)):
        try:
            await channel.queue_delete(q)
        except Exception:
            channel = await conn.channel()
    for x in (topology.OPENKLANT_DEAD, topology.OPENKLANT_REPLAY):
        try:
            await channel.exchange_delete(names(x))
        except Exception:
            channel = await conn.channel()
    await channel.close()


async def queue_state(conn: aio_pika.abc.AbstractConnection, name: str) -> tuple[int, int]:
    """(messages ready, consumers) of a queue; (-1, 0) when it does not exist."""
    channel = await conn.channel()
    try:
        queue = await channel.declare_queue(name, passive=True)
        result = queue.declaration_result
        return int(result.message_count or 0), int(result.consumer_count or 0)
    except Exception:
        return -1, 0
    finally:
        if not channel.is_closed:
            await channel.close()


async def wait_for(check: Callable[[], Any], what: str, within: float = 30.0, every: float = 0.1) -> Any:
    """Poll `check` (sync or async) until it returns something truthy."""
    loop = asyncio.get_running_loop()
    end = loop.time() + within
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if loop.time() > end:
            raise AssertionError(f"{what}: not within {within}s")
        await asyncio.sleep(every)


async def wait_ready(
    conn: aio_pika.abc.AbstractConnection,
    names: Names,
    proc: ExporterProcess,
    tenants: tuple[str, ...] = TENANTS,
) -> None:
    async def consuming() -> bool:
        assert proc.proc is not None
        if proc.proc.poll() is not None:
            raise AssertionError(f"the exporter exited with {proc.proc.returncode}:\n{proc.logs()[-3000:]}")
        return all([(await queue_state(conn, names.openklant_queue(t)))[1] > 0 for t in tenants])

    await wait_for(consuming, "the exporter consumes openklant.events.<tenant>", within=30)
