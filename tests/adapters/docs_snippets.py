"""The code blocks of docs/adapters.md that are whole files: those whose first line is `# file: PATH`."""

from __future__ import annotations

import re
from pathlib import Path

from tests.conftest import ROOT

DOC = ROOT / "docs" / "adapters.md"
BLOCK = re.compile(r"^```(\w*)\n# file: (\S+)\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def whole_files(lang: str | None = None, under: str = "") -> dict[str, str]:
    """PATH → the file's text (its `# file:` line included) of the marked blocks in `lang` below `under`."""
    out: dict[str, str] = {}
    for match in BLOCK.finditer(DOC.read_text(encoding="utf-8")):
        kind, path, text = match.groups()
        if (lang is None or kind == lang) and path.startswith(under):
            assert path not in out, f"docs/adapters.md writes {path} twice"
            out[path] = f"# file: {path}\n{text}"
    return out


def write(root: Path, files: dict[str, str]) -> list[Path]:
    written = []
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
