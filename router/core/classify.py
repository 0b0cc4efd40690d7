"""Classification: the first route whose conditions all hold decides the team.

Rules are compiled once per tenant (normalised keywords in a phrase index), so a contact costs one
tokenisation and a walk over the routes with cheap set tests, however many routes a tenant has.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

from router.core.contact import Contact
from router.core.rules import LoadedRules

_WORD = re.compile(r"[\w]+", re.UNICODE)


_NON_ASCII = re.compile(r"[^\x00-\x7f]")
# ASCII text: every character but [a-z0-9_] becomes a space, so split() yields what _WORD finds.
_ASCII_NON_WORD = str.maketrans({chr(i): " " for i in range(128) if not re.fullmatch(r"[a-z0-9_]", chr(i))})


def _drop_combining(match: re.Match[str]) -> str:
    c = match.group()
    return "" if unicodedata.combining(c) else c


def normalise(text: str) -> list[str]:
    """Lower-case words without accents: 'Kaart', 'KAART' and 'káart' agree."""
    if text.isascii():
        # Most mail is plain ASCII: casefold is lower() there and NFKD changes nothing (a per-character
        # Python loop over a 2 KB body was half of the router's CPU).
        return text.lower().translate(_ASCII_NON_WORD).split()
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    # Only non-ASCII characters can be combining marks: the regex skips the rest in C.
    return _WORD.findall(_NON_ASCII.sub(_drop_combining, decomposed))


def _positions(words: list[str], wanted: set[str]) -> list[int]:
    """Every position of the wanted words (list.index scans in C)."""
    out = []
    for word in wanted:
        i = -1
        try:
            while True:
                i = words.index(word, i + 1)
                out.append(i)
        except ValueError:
            pass
    return out


@dataclass(frozen=True)
class Decision:
    team: str
    category: str | None
    rule: str  # route name, or "default"
    rule_line: int
    file: str
    reasons: tuple[str, ...]

    @property
    def where(self) -> str:
        return f"{self.file}:{self.rule_line}"


@dataclass
class _CompiledRoute:
    index: int
    name: str
    team: str
    category: str | None
    line: int
    channels: frozenset[str] | None
    categories: frozenset[str] | None
    phrases: tuple[tuple[str, ...], ...] | None
    domains: tuple[str, ...] | None
    metadata: tuple[tuple[str, str], ...] | None


@dataclass
class Classifier:
    loaded: LoadedRules
    routes: list[_CompiledRoute] = field(default_factory=list)
    # phrase -> route indexes; lets one pass over the text find every keyword route that matches.
    phrase_index: dict[tuple[str, ...], list[int]] = field(default_factory=dict)
    max_phrase: int = 1
    # Derived from phrase_index: one-word keywords, and per phrase length the first words of its phrases.
    single_words: dict[str, list[int]] = field(default_factory=dict)
    single_keys: frozenset[str] = frozenset()
    first_words: dict[int, frozenset[str]] = field(default_factory=dict)
    # sender domain -> indexes of the routes that name it.
    domain_index: dict[str, list[int]] = field(default_factory=dict)
    # Routes with neither keywords nor sender domains: the rest can only match if the text has one of
    # their keywords or the sender one of their domains, so classify() walks only those that do.
    ungated: tuple[int, ...] = ()

    @classmethod
    def compile(cls, loaded: LoadedRules) -> Classifier:
        self = cls(loaded)
        for i, route in enumerate(loaded.rules.routes):
            cond = route.when
            phrases = None
            if cond.keywords:
                phrases = tuple(tuple(normalise(k)) for k in cond.keywords if normalise(k))
                for phrase in phrases:
                    self.phrase_index.setdefault(phrase, []).append(i)
                    self.max_phrase = max(self.max_phrase, len(phrase))
            self.routes.append(
                _CompiledRoute(
                    index=i,
                    name=route.name,
                    team=route.team,
                    category=route.category,
                    line=loaded.route_lines[i],
                    channels=frozenset(cond.channel) if cond.channel else None,
                    categories=frozenset(cond.category) if cond.category else None,
                    phrases=phrases,
                    domains=tuple(d.lower().lstrip("@") for d in cond.sender_domain)
                    if cond.sender_domain
                    else None,
                    metadata=tuple(sorted(cond.metadata.items())) if cond.metadata else None,
                )
            )
        self.single_words = {p[0]: idx for p, idx in self.phrase_index.items() if len(p) == 1}
        self.single_keys = frozenset(self.single_words)
        for p in self.phrase_index:
            if len(p) > 1:
                self.first_words[len(p)] = self.first_words.get(len(p), frozenset()) | {p[0]}
        for r in self.routes:
            for d in r.domains or ():
                self.domain_index.setdefault(d, []).append(r.index)
        self.ungated = tuple(r.index for r in self.routes if r.phrases is None and r.domains is None)
        return self

    def _keyword_hits(self, contact: Contact) -> dict[int, tuple[str, ...]]:
        hits: dict[int, tuple[str, ...]] = {}
        if not self.phrase_index:
            return hits
        words = normalise(f"{contact.subject or ''}\n{contact.body}")
        n = len(words)
        present = set(words)
        # A route keeps the shortest of its phrases found, and of those the one that occurs first: one-word
        # keywords in order of first occurrence, then longer phrases position by position. The set
        # operations run in C, so a long text with no keyword costs little however many routes there are.
        for word in sorted(present & self.single_keys, key=words.index):
            for idx in self.single_words[word]:
                hits.setdefault(idx, (word,))
        for length in range(2, self.max_phrase + 1):
            starts = present.intersection(self.first_words.get(length, ()))
            if not starts:
                continue
            for start in sorted(_positions(words, starts)):
                if start > n - length:
                    continue
                phrase = tuple(words[start : start + length])
                for idx in self.phrase_index.get(phrase, ()):
                    hits.setdefault(idx, phrase)
        return hits

    def classify(self, contact: Contact) -> Decision:
        hits = self._keyword_hits(contact)
        domain = None
        if contact.sender and contact.sender.email:
            domain = contact.sender.email.rsplit("@", 1)[-1].lower()
        file = self.loaded.file
        # `domain == d or domain.endswith("." + d)` below holds exactly for d among these suffixes.
        by_domain: set[int] = set()
        if domain is not None and self.domain_index:
            for suffix in (domain, *(domain[i + 1 :] for i, ch in enumerate(domain) if ch == ".")):
                by_domain.update(self.domain_index.get(suffix, ()))
        # Skip the routes whose keywords are not in the text or whose domains are not the sender's: they
        # would fail below anyway. Order stays the rules' order: the first match still wins.
        routes = self.routes
        gated = [
            i
            for i in (by_domain.union(hits) if by_domain else hits)
            if (routes[i].phrases is None or i in hits) and (routes[i].domains is None or i in by_domain)
        ]
        candidates = sorted(self.ungated + tuple(gated)) if gated else self.ungated
        for i in candidates:
            r = self.routes[i]
            reasons: list[str] = []
            if r.channels is not None:
                if contact.channel not in r.channels:
                    continue
                reasons.append(f"channel is {contact.channel}")
            if r.categories is not None:
                if contact.category not in r.categories:
                    continue
                reasons.append(f"category is {contact.category}")
            if r.phrases is not None:
                phrase = hits.get(r.index)
                if phrase is None:
                    continue
                reasons.append(f"keyword '{' '.join(phrase)}' in subject or body")
            if r.domains is not None:
                if domain is None or not any(domain == d or domain.endswith("." + d) for d in r.domains):
                    continue
                reasons.append(f"sender domain is {domain}")
            if r.metadata is not None:
                if any(contact.metadata.get(k) != v for k, v in r.metadata):
                    continue
                reasons.append("metadata " + ", ".join(f"{k}={v}" for k, v in r.metadata))
            return Decision(
                team=r.team,
                category=contact.category or r.category,
                rule=r.name,
                rule_line=r.line,
                file=file,
                reasons=tuple(reasons) or ("route has no conditions",),
            )
        return Decision(
            team=self.loaded.rules.default_team,
            category=contact.category,
            rule="default",
            rule_line=self.loaded.default_line,
            file=file,
            reasons=("no route matched; the tenant's default team",),
        )
