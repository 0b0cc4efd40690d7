"""The docs name what exists (issue 11): every relative Markdown link leads to a file (and, with an
anchor, to a heading of it), and every repo path or module the docs and the rules' comments mention is
there. A file moved in the code without its docs fails here."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

from router.core import topology

ROOT = Path(__file__).resolve().parent.parent
DOCS = [
    ROOT / "README.md",
    ROOT / "CONTRIBUTING.md",
    ROOT / "RELIABILITY.md",
    *sorted(ROOT.glob("docs/*.md")),
]
RULES = sorted(ROOT.glob("rules/*.yaml"))

FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
LINK = re.compile(r"!?\[[^\]\n]*\]\(([^)\s]+)\)|^\[[^\]\n]+\]:\s*(\S+)", re.MULTILINE)
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)
# A path in the repository, backticked or not: it starts with one of the repository's top-level folders.
PATH = re.compile(r"(?<![\w./-])(?:router|adapters|tests|docs|rules|bench|schemas|scripts|\.ci)/[\w./-]*")
# A module named the Python way, backticked: `router.core.routing`, `adapters.kit.http.add_routes`.
MODULE = re.compile(r"`((?:router|adapters)(?:\.\w+)+)(?<!\.py)(?<!\.md)`")
# Queue and exchange names that look like modules.
AMQP_NAMES = (topology.ROUTER_QUEUE, topology.DEAD, topology.UNROUTABLE, "router.commits")


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, each space a hyphen."""
    text = re.sub(r"[`*]", "", heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(markdown: str) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for match in HEADING.finditer(FENCE.sub("", markdown)):
        base = slug(match.group(1))
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def link_problems(markdown: str, source: Path) -> list[str]:
    """Relative links of `source` that lead nowhere: a missing file, or an anchor with no heading."""
    problems = []
    for match in LINK.finditer(FENCE.sub("", markdown)):
        target = match.group(1) or match.group(2)
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto: ...
            continue
        path, _, anchor = target.partition("#")
        file = (source.parent / path).resolve() if path else source
        if not file.exists():
            problems.append(f"{target}: no file {path}")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file.read_text()):
            problems.append(f"{target}: no heading #{anchor} in {file.name}")
    return problems


def mention_problems(text: str, root: Path = ROOT) -> list[str]:
    """Repo paths (relative to the repository root) and modules that do not exist."""
    problems = []
    for match in PATH.finditer(text):
        path = match.group(0).rstrip(".,:;")
        if not (root / path).exists():
            problems.append(f"{path}: no such file or folder")
    for match in MODULE.finditer(text):
        name = match.group(1)
        if not name.startswith(AMQP_NAMES) and not _importable(name):
            problems.append(f"{name}: no such module or attribute")
    return problems


def _importable(dotted: str) -> bool:
    parts = dotted.split(".")
    for n in range(len(parts), 0, -1):
        try:
            obj: object = importlib.import_module(".".join(parts[:n]))
        except ImportError:
            continue
        for attr in parts[n:]:
            if not hasattr(obj, attr):
                return False
            obj = getattr(obj, attr)
        return True
    return False


def yaml_comments(text: str) -> str:
    return "\n".join(m.group(1) for m in re.finditer(r"(?:^|\s)#(.*)$", text, re.MULTILINE))


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_links_and_mentions_in_the_docs_exist(doc: Path) -> None:
    text = doc.read_text()
    assert link_problems(text, doc) + mention_problems(text) == []


@pytest.mark.parametrize("rules", RULES, ids=lambda p: p.name)
def test_paths_in_the_rules_comments_exist(rules: Path) -> None:
    assert mention_problems(yaml_comments(rules.read_text())) == []


def test_the_checks_catch_what_is_broken(tmp_path: Path) -> None:
    (tmp_path / "other.md").write_text("# Other\n\n## Write a channel adapter in thirty minutes\n")
    doc = tmp_path / "doc.md"
    text = (
        "# Doc\n\n## Wiring (for `serve`)\n\n"
        "[ok](other.md#write-a-channel-adapter-in-thirty-minutes) [ok](#wiring-for-serve) "
        "[web](https://example.org/x.md) [gone](missing.md) [no heading](other.md#nowhere)\n"
        "`router/core/routing.py` `router/casework.py` `router.core.routing.route` `adapters.wiring` "
        "`router.contacts` `router.commits.<id>` `rules/<tenant>.yaml` `adapters.md` ../shared/DESIGN.md\n"
        "```\n[in code](not-checked.md)\n```\n"
    )
    doc.write_text(text)
    assert link_problems(text, doc) == [
        "missing.md: no file missing.md",
        "other.md#nowhere: no heading #nowhere in other.md",
    ]
    assert mention_problems(text) == [
        "router/casework.py: no such file or folder",
        "adapters.wiring: no such module or attribute",
    ]
    assert mention_problems(yaml_comments("team: kcc  # see adapters/kit/acks.py and router/api.py\n")) == [
        "router/api.py: no such file or folder"
    ]
    assert slug("Figures of the last runs (November 2026, 2-core machine)") == (
        "figures-of-the-last-runs-november-2026-2-core-machine"
    )
