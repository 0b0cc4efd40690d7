"""Service norms per tenant (YAML `norms:`) and the lookup of the term that applies to a contact."""

from __future__ import annotations

import re
from collections.abc import Iterator
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, PrivateAttr, RootModel, model_validator

from router.core.calendar.terms import Term, TermField

__all__ = ["Identifier", "NormKind", "NormSpec", "NormTable"]


class NormKind(StrEnum):
    ACKNOWLEDGE = "acknowledge"
    RESPOND = "respond"
    CALLBACK = "callback"
    RESOLVE = "resolve"


_IDENTIFIER = re.compile(r"[a-z][a-z0-9_]*")


def _identifier(value: Any) -> Any:
    # Channels and categories are open-ended (an integrator may add a channel), so they are free
    # identifiers rather than an enum; lower-casing keeps "Mail" in a rules file matching "mail".
    if not isinstance(value, str):
        return value
    text = value.strip().lower()
    if not _IDENTIFIER.fullmatch(text):
        raise ValueError(f"invalid identifier {value!r}: expected lowercase letters, digits and '_'")
    return text


Identifier = Annotated[str, BeforeValidator(_identifier)]


class NormSpec(BaseModel):
    """One norm: the term for `kind`, optionally only for one channel and/or one category."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: NormKind
    term: TermField
    channel: Identifier | None = None
    category: Identifier | None = None

    @property
    def key(self) -> tuple[NormKind, str | None, str | None]:
        return (self.kind, self.channel, self.category)


class NormTable(RootModel[tuple[NormSpec, ...]]):
    """A tenant's norms. The most specific norm for a contact wins (see `term_for`)."""

    model_config = ConfigDict(frozen=True)

    root: tuple[NormSpec, ...] = ()
    _index: dict[tuple[NormKind, str | None, str | None], Term] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _no_duplicates(self) -> NormTable:
        seen: dict[tuple[NormKind, str | None, str | None], int] = {}
        for i, norm in enumerate(self.root):
            if norm.key in seen:
                # Two norms for the same situation would make the lookup depend on their order.
                raise ValueError(
                    f"norms {seen[norm.key]} and {i} both apply to kind={norm.kind.value!r}, "
                    f"channel={norm.channel!r}, category={norm.category!r}"
                )
            seen[norm.key] = i
        return self

    def model_post_init(self, context: Any, /) -> None:
        self._index = {norm.key: norm.term for norm in self.root}

    def term_for(self, channel: str | None, category: str | None, kind: NormKind | str) -> Term | None:
        """The term of the most specific norm for a contact, or None when no norm applies.

        Channel and category together beat category only, which beats channel only, which beats a
        norm with neither.
        """
        kind = NormKind(kind)
        channel = channel.lower() if channel is not None else None
        category = category.lower() if category is not None else None
        index = self._index
        # With channel or category None the keys repeat, which keeps the order right.
        for key in ((kind, channel, category), (kind, None, category), (kind, channel, None)):
            term = index.get(key)
            if term is not None:
                return term
        return index.get((kind, None, None))

    def __iter__(self) -> Iterator[NormSpec]:  # type: ignore[override]
        # Iterate the norms, not pydantic's (field, value) pairs.
        return iter(self.root)

    def __len__(self) -> int:
        return len(self.root)
