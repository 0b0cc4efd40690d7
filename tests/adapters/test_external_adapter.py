"""A channel adapter built outside this project — the package my-kiosk of docs/adapters.md — installed
into a fresh environment beside contact-router: its contract runs with one command (`python -m pytest`
in the package), and the service's registry lists it next to the built-in adapters, which still load.
Nothing is installed into this project's environment."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import pytest

from adapters.kit import registry
from adapters.kit.testing import PROMISES
from tests.adapters import docs_snippets

pytestmark = pytest.mark.slow

BUILT_IN = {"mail", "webform", "social", "phone", "counter"}

# The docs' pyproject.toml builds with setuptools, which (before 70.1) needs the `wheel` package to
# build: this environment has neither that nor an index to fetch it from. So the package is built by
# a backend from the standard library only (stdlib_backend.py, beside this file), out of the same
# [project] table; the installation itself is pip's.
BACKEND = Path(__file__).with_name("stdlib_backend.py")
STDLIB_BUILD = '[build-system]\nrequires = []\nbuild-backend = "stdlib_backend"\nbackend-path = ["."]\n'


@dataclass(frozen=True)
class Installed:
    package: Path  # the package's source tree
    python: Path  # the fresh environment's interpreter


def run(python: Path, *args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    # Nothing of this test run leaks into the other process: no pytest variables (PYTEST_ADDOPTS,
    # PYTEST_DISABLE_PLUGIN_AUTOLOAD, ...), no rules directory or enabled adapters, no PYTHONPATH.
    dropped = ("RULES_DIR", "ADAPTERS_ENABLED", "PYTHONPATH")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_") and k not in dropped}
    return subprocess.run(
        [str(python), *args], cwd=cwd, env={**clean, **env}, capture_output=True, text=True, timeout=120
    )


@pytest.fixture(scope="module")
def kiosk(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    root = tmp_path_factory.mktemp("external")
    docs_snippets.write(root, docs_snippets.whole_files(under="my-kiosk/"))
    package = root / "my-kiosk"
    pyproject = (package / "pyproject.toml").read_text(encoding="utf-8")
    build_system = re.compile(r"^\[build-system\]\n(?:[^\[\n].*\n)*", re.MULTILINE)
    assert build_system.search(pyproject), "the docs' pyproject.toml has no [build-system] table"
    (package / "pyproject.toml").write_text(build_system.sub(STDLIB_BUILD, pyproject), encoding="utf-8")
    shutil.copy(BACKEND, package / "stdlib_backend.py")

    # A fresh environment that sees this project's environment (contact-router, pytest, ...) through a
    # .pth file, so that what gets installed lands in the fresh one only.
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    python = venv / "bin" / "python"
    where = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    purelib = Path(run(python, "-c", where, cwd=root).stdout.strip())
    ours = sysconfig.get_paths()["purelib"]
    (purelib / "contact_router_env.pth").write_text(f"import site; site.addsitedir({ours!r})\n")
    installed = run(
        python,
        *("-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index", "--no-cache-dir"),
        *("--disable-pip-version-check", "--quiet", str(package)),
        cwd=root,
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    assert (purelib / "my_kiosk" / "adapter.py").is_file()
    return Installed(package, python)


def test_its_contract_passes_with_one_command(kiosk: Installed) -> None:
    result = run(kiosk.python, "-m", "pytest", "-p", "no:cacheprovider", "-v", cwd=kiosk.package)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    # The plugin came with contact-router's entry point, not from anything in the package.
    assert re.search(r"^plugins: .*contact-router", out, re.MULTILINE), out
    for promise in PROMISES:
        assert re.search(rf"test_contract\[kiosk-{promise}\] PASSED", out), out
    assert "5 passed" in out


def test_the_registry_lists_it_beside_the_built_in_adapters(kiosk: Installed) -> None:
    enabled = ",".join(sorted(BUILT_IN | {"kiosk"}))
    listed = run(
        kiosk.python,
        "-m",
        "router.cli",
        "adapters",
        "list",
        "--json",
        cwd=kiosk.package,
        ADAPTERS_ENABLED=enabled,
    )
    assert listed.returncode == 0, listed.stdout + listed.stderr
    rows = {r["name"]: r for r in json.loads(listed.stdout)}
    assert rows["kiosk"] | {"summary": ""} == {
        "name": "kiosk",
        "target": "my_kiosk:KioskAdapter",
        "source": "my-kiosk",
        "channel": "kiosk",
        "summary": "",
        "error": None,
        "enabled": True,
    }
    assert {n: (r["source"], r["error"]) for n, r in rows.items() if n in BUILT_IN} == {
        n: ("contact-router", None) for n in BUILT_IN
    }
    # The service loads all six as it would at start-up.
    code = f"from adapters.kit import registry; print(sorted(registry.load_adapters({enabled!r}.split(','))))"
    loaded = run(kiosk.python, "-c", code, cwd=kiosk.package)
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.strip() == repr(sorted(BUILT_IN | {"kiosk"}))


def test_nothing_was_installed_here(kiosk: Installed) -> None:
    with pytest.raises(metadata.PackageNotFoundError):
        metadata.distribution("my-kiosk")
    assert "kiosk" not in {i.name for i in registry.list_adapters()}
