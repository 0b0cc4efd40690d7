"""Start-up never pretends (issue 12): a service process waits for RabbitMQ and Redis, each, up to
STARTUP_TIMEOUT, says what it waits for, and exits non-zero; only the quick start (`serve --demo`) may
choose the embedded mode by itself. A Redis that keeps nothing on disk is reported at start-up."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from typing import Any

import pytest
import redis.asyncio as aioredis
import structlog

from router.core.tenants import Tenant
from router.redis.client import redis_client
from router.service import _report_durability, declare_topology
from router.settings import Settings
from tests.conftest import AMQP_URL, REDIS_URL, ROOT, new_namespace
from tests.redis_cluster import RedisClusterNodes

# Ports nothing listens on (refused at once).
AMQP_DOWN = "amqp://guest:guest@127.0.0.1:1/"
REDIS_DOWN = "redis://127.0.0.1:2/0"
TIMEOUT = 3.0


def start(*args: str, amqp: str, redis: str) -> tuple[subprocess.CompletedProcess[str], float]:
    env = {
        **os.environ,
        "AMQP_URL": amqp,
        "REDIS_URL": redis,
        "STARTUP_TIMEOUT": str(TIMEOUT),
        "LOG_FORMAT": "json",
        "HTTP_PORT": "0",
    }
    began = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "router.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done, time.monotonic() - began


@pytest.mark.parametrize("command", [["router"], ["api"], ["scheduler"], ["serve"]])
def test_with_both_servers_down_a_service_process_waits_and_exits_without_embedded_mode(
    command: list[str],
) -> None:
    done, took = start(*command, amqp=AMQP_DOWN, redis=REDIS_DOWN)
    assert done.returncode != 0
    assert took >= TIMEOUT, f"gave up after {took:.1f} s"
    assert "not reachable at start-up" in done.stderr and "STARTUP_TIMEOUT" in done.stderr
    assert "waiting_for_" in done.stderr
    assert "EMBEDDED" not in done.stderr + done.stdout


def test_with_only_redis_down_the_router_waits_the_startup_timeout(servers: None) -> None:
    done, took = start("router", amqp=AMQP_URL, redis=REDIS_DOWN)
    assert done.returncode != 0
    assert took >= TIMEOUT, f"gave up after {took:.1f} s"
    assert "waiting_for_redis" in done.stderr and "Redis not reachable at start-up" in done.stderr


def test_with_only_rabbitmq_down_the_router_waits_the_startup_timeout(servers: None) -> None:
    done, took = start("router", amqp=AMQP_DOWN, redis=REDIS_URL)
    assert done.returncode != 0
    assert took >= TIMEOUT, f"gave up after {took:.1f} s"
    assert "waiting_for_rabbitmq" in done.stderr and "RabbitMQ not reachable at start-up" in done.stderr


def test_the_quick_start_alone_falls_back_to_the_embedded_mode() -> None:
    done, _ = start("serve", "--demo", "--once", amqp=AMQP_DOWN, redis=REDIS_DOWN)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "EMBEDDED MODE" in done.stderr


def test_an_api_that_cannot_listen_ends_the_process(servers: None) -> None:
    """A taken port: the process says why and exits non-zero instead of running without its API."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {
            **os.environ,
            "AMQP_URL": AMQP_URL,
            "REDIS_URL": REDIS_URL,
            "LOG_FORMAT": "json",
            "NAMESPACE": new_namespace(),
        }
        done = subprocess.run(
            [sys.executable, "-m", "router.cli", "api", "--port", str(port)],
            cwd=ROOT,
            env={**env, "HTTP_PORT": str(port)},
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 1, done.stderr[-2000:]
    assert '"event": "http_server_failed"' in done.stderr and "OSError" in done.stderr


async def test_a_queue_declared_with_other_arguments_stops_the_start_at_once(
    settings: Settings, tenants: dict[str, Tenant]
) -> None:
    """An upgrade that meets the old delivery limit on router.contacts: no waiting for a broker that
    answers, but the reason and what to do."""
    await declare_topology(settings.model_copy(update={"delivery_limit": 5}), tenants)
    env = {
        **os.environ,
        "AMQP_URL": AMQP_URL,
        "REDIS_URL": REDIS_URL,
        "LOG_FORMAT": "json",
        "NAMESPACE": settings.namespace,
        "RULES_DIR": str(settings.rules_dir),
        "STARTUP_TIMEOUT": "30",
    }
    began = time.monotonic()
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "router.cli", "router"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert time.monotonic() - began < 20
    assert "inequivalent arg 'x-delivery-limit'" in done.stderr and "set DELIVERY_LIMIT" in done.stderr


async def test_a_redis_that_keeps_nothing_on_disk_is_reported(redis_client: Any) -> None:
    aof = (await redis_client.config_get("appendonly"))["appendonly"]
    save = (await redis_client.config_get("save"))["save"]
    with structlog.testing.capture_logs() as logs:
        await _report_durability(redis_client)
    reported = [e for e in logs if e["event"] == "redis_keeps_nothing_on_disk"]
    if aof in ("no", b"no") and save in ("", b""):
        assert len(reported) == 1 and "timers" in reported[0]["message"]
    else:
        assert reported == []


async def test_a_cluster_master_that_keeps_nothing_on_disk_is_reported_by_name(
    redis_cluster: RedisClusterNodes,
) -> None:
    """Every primary is asked, not one at random: the test cluster keeps an AOF on each master; with
    one master's turned off, every report names that master, and only it."""
    client = redis_client(redis_cluster.url)
    bare = aioredis.Redis(port=redis_cluster.ports[1])
    try:
        with structlog.testing.capture_logs() as logs:
            await _report_durability(client)
        assert [e for e in logs if e["event"] == "redis_keeps_nothing_on_disk"] == []
        assert await bare.config_get("save") == {"save": ""}  # the cluster's nodes have no RDB snapshots
        await bare.config_set("appendonly", "no")
        with structlog.testing.capture_logs() as logs:
            for _ in range(5):  # one node asked at random would miss it in two reports of three
                await _report_durability(client)
        reported = [e for e in logs if e["event"] == "redis_keeps_nothing_on_disk"]
        assert len(reported) == 5 and "timers" in reported[0]["message"]
        assert all(e["nodes"] == [f"127.0.0.1:{redis_cluster.ports[1]}"] for e in reported)
    finally:
        await bare.config_set("appendonly", "yes")
        await bare.aclose()
        await client.aclose()


def test_a_key_limited_to_a_tenant_without_rules_stops_the_start_without_quoting_it(servers: None) -> None:
    """`svc:abc:def...` reads as key 'abc' for tenant 'def...': most likely a key with a ':' in it."""
    env = {
        **os.environ,
        "AMQP_URL": AMQP_URL,
        "REDIS_URL": REDIS_URL,
        "LOG_FORMAT": "json",
        "NAMESPACE": new_namespace(),
        "API_KEYS": "ok:first-key:ommen,svc:abc:defsecretpart",
        "HTTP_PORT": "0",
    }
    done = subprocess.run(
        [sys.executable, "-m", "router.cli", "api"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert "API_KEYS credential(s) svc name a tenant that has no rules" in done.stderr
    assert "defsecretpart" not in done.stderr


def test_the_development_sign_in_with_a_real_provider_configured_stops_the_start(
    servers: None, tmp_path: Any
) -> None:
    """Issue 18: the demo agents' sign-in (no password) must never run beside a municipality's
    provider. The rules map the provider's groups, so the only reason to refuse is the pair."""
    rules = tmp_path / "rules"
    rules.mkdir()
    text = (ROOT / "rules" / "ommen.yaml").read_text(encoding="utf-8")
    (rules / "ommen.yaml").write_text(
        text + "\nagents:\n  claim: groups\n  teams: {kcc-medewerkers: kcc}\n", encoding="utf-8"
    )
    env = {
        **os.environ,
        "AMQP_URL": AMQP_URL,
        "REDIS_URL": REDIS_URL,
        "LOG_FORMAT": "json",
        "NAMESPACE": new_namespace(),
        "RULES_DIR": str(rules),
        "HTTP_PORT": "0",
        "WORKSPACE_DEV_SIGNIN": "true",
        "OIDC_OMMEN_ISSUER": "https://login.ommen.example/realms/kcc",
        "OIDC_OMMEN_CLIENT_ID": "werkplek",
        "OIDC_OMMEN_CLIENT_SECRET": "geheim-provider-secret",
    }
    done = subprocess.run(
        [sys.executable, "-m", "router.cli", "api"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert "WORKSPACE_DEV_SIGNIN" in done.stderr and "ommen" in done.stderr
    assert "geheim-provider-secret" not in done.stderr + done.stdout
