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
    assert "router / ceiling (goal)" in proc.stdout  # the table was printed

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
    # Issue 21's goals: 70 % of ceiling_confirm; p99 at 500/s against ceiling_tx's.
    assert r["goals"]["throughput_ratio_pct"]["target"] == ">= 70"
    p99 = r["goals"]["p99_ratio_at_500"]
    assert p99["of"] == "ceiling_tx"
    at500 = r["latency"]["500"]
    assert p99["value"] == round(at500["router"]["p99_ms"] / at500["ceiling_tx"]["p99_ms"], 2)


def test_scale_out_routes_each_contact_once_through_one_and_two_routers(
    servers: None, tmp_path: Path
) -> None:
    """`--scale-out`: the same number of contacts through 1 and then 2 router processes on one queue; the
    table has a row per router count with positive figures, and each contact arrived once, by id."""
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--scale-out", "--results-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    head = "routers contacts/s router CPU s/1,000"
    assert head in " ".join(proc.stdout.split()), proc.stdout
    # The table's rows: routers, seven figures, and "yes" or "NO" for exactly once.
    rows = [cells for line in proc.stdout.splitlines() if (cells := line.split())[-1:] in (["yes"], ["NO"])]
    assert [row[0] for row in rows] == ["1", "2"], proc.stdout
    for row in rows:
        assert len(row) == 9 and all(float(x.replace(",", "")) > 0 for x in row[1:6]), row  # rate, CPU
        assert row[-1] == "yes", proc.stdout

    [stamped] = [p for p in tmp_path.glob("*.json") if p.name != "latest.json"]
    assert stamped.name.endswith("-quick-scale-out.json")
    r = _strict(stamped.read_text(encoding="utf-8"))
    assert "throughput" not in r or not r["throughput"]  # only the scale-out phase ran
    s = r["scale_out"]
    assert [run["routers"] for run in s["runs"]] == [1, 2]
    for run in s["runs"]:
        assert run["contacts"] == r["params"]["scale_out_n"] > 0
        assert run["drain"]["processes"] == run["routers"]
        for key in ("rate", "router_cpu_s_per_1000", "rabbitmq_us_per_contact", "redis_us_per_contact",
                    "redis_key_bytes_per_open_item"):  # fmt: skip
            assert _number(run[key]) and run[key] > 0, (key, run)
        # used_memory is the whole (shared) server's: a number, positive unless another client freed more.
        assert _number(run["redis_bytes_per_open_item"]), run
        # Exactly once: every expected team item by contact id, none twice, none unexpected or left over.
        assert run["team_items"] == run["open_items"] > 0, run
        assert run["routed_twice"] == run["missing"] == run["unexpected"] == 0, run
        assert run["left_in_input"] == run["dead_or_unroutable"] == 0, run
        assert run["exactly_once"] is True
    assert s["exactly_once"] is True
    assert _number(s["median"]["speedup"])


def test_the_full_run_measures_the_four_goals_and_the_scale_out_in_one_run() -> None:
    """`bench --full` (issue 21, item 4): every phase, the scale-out included, and RSS up to 1,000,000."""
    from bench.routing import ALL_PHASES, Params

    full = Params.for_mode("full")
    assert set(full.phases) == set(ALL_PHASES)
    assert (full.memory_first, full.memory_n) == (10_000, 1_000_000)
    assert full.scale_out_routers == (1, 2)
