"""A work list's items, lightly (`ItemHead`): enough to count, filter and page thousands of them without
reading each resident's message; and the compact form the store keeps of each beside the list
(router/redis/heads.py), so that reading a list of 5,000 takes two commands."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from router.core.casework import parse_callback_id
from router.core.clock import epoch_ms
from router.core.deadlines import NO_DEADLINE_SCORE

# What an item head reads of the hashes when the store keeps no head for it.
HEAD_CONTACT_FIELDS = ["channel", "category", "deadlines", "received_at"]
HEAD_CALLBACK_FIELDS = ["contact_id", "due", "term", "counted_from", "created_at"]


@dataclass(frozen=True)
class ItemHead:
    """One item of a work list, lightly: enough to count, filter and page it."""

    id: str
    score: float
    kind: str  # 'contact' | 'callback_request'
    channel: str | None
    category: str | None
    due: datetime | None
    term: str | None
    counted_from: str | None  # when its term started to run


def _due(score: float) -> datetime | None:
    return None if score >= NO_DEADLINE_SCORE else datetime.fromtimestamp(score / 1000, UTC)


def _listed_term(deadlines: list[dict[str, Any]], score: float) -> str | None:
    """The term of the deadline the item is listed by (its due is the list's score)."""
    for d in deadlines:
        if epoch_ms(datetime.fromisoformat(d["due"])) == int(score):
            term = d.get("term")
            return str(term) if term else None
    return None


def item_head(member: str, score: float, row: dict[str, str], contact_row: dict[str, str]) -> ItemHead:
    """From the member's own hash fields (HEAD_*_FIELDS) and, for a callback request, its contact's."""
    channel, category = contact_row.get("channel") or None, contact_row.get("category") or None
    if parse_callback_id(member):
        return ItemHead(
            member,
            score,
            "callback_request",
            channel,
            category,
            _due(score),
            row.get("term") or None,
            row.get("counted_from") or row.get("created_at") or None,
        )
    term = _listed_term(json.loads(row.get("deadlines", "[]")), score) if score < NO_DEADLINE_SCORE else None
    return ItemHead(
        member, score, "contact", channel, category, _due(score), term, row.get("received_at") or None
    )


def encode_head(
    member: str, score: int, contact: dict[str, str], callback: dict[str, str] | None
) -> str | None:
    """The compact head of `member` listed at `score`, from the contact's fields (and the callback
    request's, for one): [score, term, counted from, channel, category]. None when not at hand."""
    if parse_callback_id(member):
        if callback is None:
            return None
        head = item_head(member, score, callback, contact)
    else:
        head = item_head(member, score, contact, contact)
    return json.dumps([score, head.term, head.counted_from, head.channel, head.category])


def decode_head(member: str, score: float, raw: bytes | str) -> ItemHead | None:
    """The head, if it is readable and was written for the score the list has now (else stale)."""
    try:
        listed, term, counted_from, channel, category = json.loads(raw)
    except (ValueError, TypeError):
        return None
    if listed != int(score):
        return None
    kind = "callback_request" if parse_callback_id(member) else "contact"
    return ItemHead(member, score, kind, channel, category, _due(score), term, counted_from)
