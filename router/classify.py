"""Classification: the first route whose conditions all hold decides the team.

Rules are compiled once per tenant (normalised keywords in a phrase index), so a contact costs one
tokenisation and a walk over the routes with cheap set tests, however many routes a tenant has.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

from router.contact import Contact
from router.rules import LoadedRules

_WORD = re.compile(r"[\w]+", re.UNICODE)


def normalise(text: str) -> list[str]:
    """Lower-case words without accents: 'Kaart', 'KAART' and 'káart' agree."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return _WORD.findall(stripped)


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
        return self

    def _keyword_hits(self, contact: Contact) -> dict[int, tuple[str, ...]]:
        hits: dict[int, tuple[str, ...]] = {}
        if not self.phrase_index:
            return hits
        words = normalise(f"{contact.subject or ''}\n{contact.body}")
        n = len(words)
        for length in range(1, self.max_phrase + 1):
            for start in range(0, n - length + 1):
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
        for r in self.routes:
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
