"""The Python blocks of docs/adapters.md that are whole files (first line `# file: PATH`) pass
`mypy --strict` with this repository's packages and mypy settings: the docs' code is complete, imports
included, and uses the kit as it is. (tests/adapters/test_external_adapter.py builds and runs them.)"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.adapters import docs_snippets
from tests.conftest import ROOT

EXPECTED = {
    "my-kiosk/src/my_kiosk/__init__.py",
    "my-kiosk/src/my_kiosk/adapter.py",
    "my-kiosk/tests/test_contract.py",
    "my-service/serve.py",
}


def test_the_whole_files_are_found() -> None:
    assert set(docs_snippets.whole_files("python")) == EXPECTED
    assert set(docs_snippets.whole_files("toml")) == {"my-kiosk/pyproject.toml"}


@pytest.mark.slow
def test_the_whole_files_of_the_adapter_docs_pass_mypy_strict(tmp_path: Path) -> None:
    files = docs_snippets.write(tmp_path, docs_snippets.whole_files("python"))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--config-file",
            str(ROOT / "pyproject.toml"),
            "--strict",
            # The snippets' own errors only: the project's modules are checked by `mypy` itself.
            "--follow-imports=silent",
            # Its own cache: other options than the project's run, which would otherwise rebuild it.
            "--cache-dir",
            str(ROOT / ".mypy_cache" / "docs-snippets"),
            *map(str, files),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, (result.stdout + result.stderr).replace(f"{tmp_path}/", "")
