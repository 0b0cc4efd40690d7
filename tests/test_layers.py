"""The house rules of the code (issue 11): layers that show in the folders, no circles, short functions.

The import contracts live in `.importlinter` and are checked by import-linter; these tests run it, show
that it does catch an import that runs back up a layer, and keep the routing and case-work path readable.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")

# The modules a contact's routing and an agent's action go through.
DECISION_PATH = [
    "router/core/routing.py",
    "router/core/pipeline.py",
    "router/core/casework.py",
    "router/core/casework_service.py",
    "router/redis/store.py",
    "router/redis/casestore.py",
    "router/amqp/consumer.py",
    "router/embedded/broker.py",
    "router/http/agents.py",
]
MAX_FUNCTION_LINES = 80


def lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(cwd)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def test_every_import_contract_is_kept() -> None:
    run = lint_imports(ROOT)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "0 broken" in run.stdout


@pytest.mark.parametrize(
    ("module", "source", "broken", "where"),
    [
        ("router/core/_planted.py", "import redis\n", "The core imports no broker", "_planted"),
        (
            "router/core/_planted.py",
            "from router.http import app\n",
            "The core imports no broker",
            "_planted",
        ),
        ("router/amqp/_planted.py", "from router.http import app\n", "Router layers", "_planted"),
        (
            "adapters/mail/_planted.py",
            "from router.amqp import publisher\n",
            "Adapters and the kit import only",
            "_planted",
        ),
        (
            "adapters/kit/_planted.py",
            "from adapters.mail import adapter\n",
            "The integrator kit names no channel",
            "_planted",
        ),
        (
            "adapters/webform/_planted.py",
            "from adapters.social import adapter\n",
            "Channel adapters do not import",
            "_planted",
        ),
        (
            "router/core/calendar/_planted.py",
            "from router.core import tenants\n",
            "No import circles",
            ".calendar -> .tenants",
        ),
    ],
)
def test_an_import_that_runs_back_up_a_layer_breaks_a_contract(
    tmp_path: Path, module: str, source: str, broken: str, where: str
) -> None:
    for name in ("router", "adapters"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / ".importlinter", tmp_path / ".importlinter")
    (tmp_path / module).write_text(source)
    run = lint_imports(tmp_path)
    assert run.returncode != 0, run.stdout
    broken_section = run.stdout.split("Broken contracts", 1)[-1]
    assert broken in broken_section and where in broken_section, run.stdout


def long_functions(path: Path, root: Path = ROOT) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [
        f"{path.relative_to(root)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno is not None
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]


def test_no_function_on_the_routing_or_case_work_path_is_over_80_lines() -> None:
    assert [f for path in DECISION_PATH for f in long_functions(ROOT / path)] == []


def test_the_length_check_sees_a_long_function(tmp_path: Path) -> None:
    (tmp_path / "long.py").write_text("def f():\n" + "    x = 1\n" * MAX_FUNCTION_LINES)
    assert long_functions(tmp_path / "long.py", tmp_path) == ["long.py:1 f (81 lines)"]
