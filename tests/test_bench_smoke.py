"""The benchmark runs end to end (`python -m bench --quick`: a few hundred contacts against the real
RabbitMQ and Redis, in a namespace of its own) and writes strict JSON with every figure; every drain and
every latency run delivered each contact once: none lost, none routed twice, nothing left in the
router's queue. No timing assertions: the figures themselves are for people, see docs/performance.md."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow

SYSTEMS = ("ceiling_confirm", "ceiling_tx", "router")


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _strict(text: str) -> dict[str, Any]:
    def no_constants(name: str) -> None:
        raise AssertionError(f"non-JSON constant {name} in the results")

    data: dict[str, Any] = json.loads(text, parse_constant=no_constants)
    return data


def test_quick_bench_writes_every_figure(servers: None, tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--results-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "router / ceiling confirm" in proc.stdout  # the table was printed

    latest = tmp_path / "latest.json"
    stamped = [p for p in tmp_path.glob("*.json") if p.name != "latest.json"]
    assert latest.exists() and len(stamped) == 1
    r = _strict(latest.read_text(encoding="utf-8"))
    assert r == _strict(stamped[0].read_text(encoding="utf-8"))
    assert r["params"]["mode"] == "quick"

    t = r["throughput"]
    for system in SYSTEMS:
        assert _number(t[system]["median"]) and t[system]["median"] > 0, system
        for run in t[system]["details"]:
            assert _number(run["rate"]) and _number(run["cpu_us_per_contact"]), run
            assert run["dead_or_unroutable"] == 0, run
            # Each expected team item arrived once: none lost (the drain waits for them all), none
            # doubled (counted again half a second later), nothing left unrouted in router.contacts.
            assert run["arrived"] == run["arrivals"] > 0, (system, run)
            assert run["left_in_input"] == 0, (system, run)
    assert _number(t["ratio_router_ceiling_confirm_pct"]["median"])
    assert _number(t["ratio_router_ceiling_tx_pct"]["median"])

    assert set(r["latency"]) == {"100", "500", "1000"}
    for rate, by_system in r["latency"].items():
        for system in SYSTEMS:
            figures = by_system[system]  # medians over the runs, one run per repeat
            assert len(figures["runs"]) == r["params"]["repeats"]
            for run in figures["runs"]:
                # Every contact offered arrived (by id), and none a second time.
                assert run["arrived"] == run["expected"] > 0, (rate, system, run)
                assert run["twice"] == 0, (rate, system, run)
            assert all(_number(figures[k]) for k in ("p50_ms", "p95_ms", "p99_ms")), (rate, system)
            assert figures["p50_ms"] <= figures["p95_ms"] <= figures["p99_ms"]

    m = r["memory"]
    assert _number(m["rss_first_kb"]) and _number(m["rss_last_kb"]) and _number(m["growth_pct"])
    assert [c["contacts"] for c in m["checkpoints"]] == [100, 300]

    rules = r["rules"]
    for n in ("10", "500"):
        assert _number(rules[n]["median"]) and _number(rules[n]["core_us_per_contact"])
    assert _number(rules["ratio_pct"]["median"])

    assert set(r["goals"]) == {
        "throughput_ratio_pct",
        "p99_ratio_at_500",
        "rss_growth_pct",
        "rules_ratio_pct",
    }
    for goal in r["goals"].values():
        assert _number(goal["value"]) and isinstance(goal["met"], bool)
