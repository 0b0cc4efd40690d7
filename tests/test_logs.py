"""Logs that are all JSON (issue 12): the service's events and what libraries log through `logging`
come out as one JSON document per line; a library's exception is its cause, not a traceback; a
warning repeated word for word is written once per window, with the count of what was left out."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

from tests.conftest import ROOT

SCRIPT = textwrap.dedent(
    """
    import logging
    from router import logs

    logs.configure("info", "json")
    log = logs.get("router.test")
    lib = logging.getLogger("aiormq.connection")
    for attempt in range(50):
        try:
            raise ConnectionRefusedError(111, "Connection refused")
        except OSError:
            lib.warning("Error when creating transport: %r", attempt, exc_info=True)
        log.warning("amqp_session_lost", error="AMQPConnectionError", retry_in=5.0)
    for n in range(3):
        log.warning("contact_dead_lettered", message_id=f"m{n}", reason="malformed JSON")
    logging.getLogger("mail.log").info("below WARNING: not written")
    logging.getLogger("asyncio").error("Task exception was never retrieved")
    """
)


def lines_of(stderr: str) -> list[dict[str, object]]:
    out = []
    for line in stderr.splitlines():
        if line.strip():
            out.append(json.loads(line))  # raises on any line that is not JSON
    return out


def test_library_and_service_logs_are_json_with_causes_and_no_floods() -> None:
    run = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "Traceback" not in run.stderr
    entries = lines_of(run.stderr)
    library = [e for e in entries if e.get("logger") == "aiormq.connection"]
    assert len(library) == 1, library
    assert library[0]["level"] == "warning" and library[0]["error"] == "ConnectionRefusedError"
    assert library[0]["cause"] == "Connection refused"
    lost = [e for e in entries if e["event"] == "amqp_session_lost"]
    assert len(lost) == 1
    # Events about different contacts are never folded together.
    assert [e["message_id"] for e in entries if e["event"] == "contact_dead_lettered"] == ["m0", "m1", "m2"]
    assert not any("below WARNING" in str(e["event"]) for e in entries)
    assert any(e.get("logger") == "asyncio" and e["level"] == "error" for e in entries)


def test_a_router_that_cannot_reach_the_broker_writes_only_json() -> None:
    env = {
        **os.environ,
        "AMQP_URL": "amqp://guest:guest@127.0.0.1:1/",
        "STARTUP_TIMEOUT": "3",
        "LOG_FORMAT": "json",
    }
    run = subprocess.run(
        [sys.executable, "-m", "router.cli", "router"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2
    entries = lines_of(run.stderr)  # every line, the library's and the final reason included
    assert entries[-1]["event"] == "cannot_start" and "not reachable" in str(entries[-1]["reason"])
    assert "Traceback" not in run.stderr
