"""The work list's heads (router/redis/heads.py, router/core/worklist.py): what counting and paging read
of a list of thousands in two commands. A head is a cache: one that is missing, unreadable or written for
another score than the list has now gives way to the item's own fields. Both backends."""

from __future__ import annotations

import json
from datetime import timedelta

from router.core.worklist import ItemHead, decode_head, encode_head
from router.redis.keys import Keys
from tests.harness import ALL_KEY, Harness


async def heads(h: Harness, team: str) -> list[ItemHead]:
    assert h.rt.casework is not None
    return await h.rt.casework.item_heads("ommen", team)


async def test_a_head_follows_the_item_and_a_bad_one_gives_way_to_the_items_fields(backend: Harness) -> None:
    cid = await backend.route("ommen", "webform", "Mijn paspoort is verlopen")
    [head] = await heads(backend, "burgerzaken")
    assert (head.id, head.kind, head.channel, head.term) == (cid, "contact", "webform", "5 workdays")
    assert head.due is not None and head.counted_from is not None

    store = backend.rt.casework.store  # type: ignore[union-attr]
    key = Keys(backend.rt.settings.namespace).team_heads("ommen", "burgerzaken")
    for bad in (None, b"not json", encode_head(cid, 1, {"channel": "mail"}, None)):  # gone, unreadable, stale
        if bad is None:
            await store.r.hdel(key, cid)
        else:
            await store.r.hset(key, cid, bad)
        assert await heads(backend, "burgerzaken") == [head], bad

    # A transfer moves the head with the item; a callback request is listed with its own.
    status, _ = await backend.transfer(cid, "belastingen", "burgerzaken")
    assert status == 200
    assert await heads(backend, "burgerzaken") == []
    [moved] = await heads(backend, "belastingen")
    assert moved.id == cid and moved.term == "5 workdays"
    resp = await backend.client.post(
        f"/v1/contacts/{cid}/callback-requests", headers=ALL_KEY, json={"reason": "bellen", "team": "kcc"}
    )
    assert resp.status == 201
    [callback] = await heads(backend, "kcc")
    assert callback.kind == "callback_request" and callback.channel == "webform"
    assert callback.due is not None and callback.due - backend.clock.now() < timedelta(days=7)


def test_a_head_is_read_back_only_for_the_score_it_was_written_for() -> None:
    contact = {"channel": "mail", "category": "paspoort", "received_at": "2026-05-13T08:00:00+00:00"}
    contact["deadlines"] = json.dumps(
        [{"kind": "respond", "due": "2026-05-21T15:00:00+00:00", "term": "5 workdays"}]
    )
    score = 1779375600000  # 2026-05-21T15:00:00Z
    raw = encode_head("c1", score, contact, None)
    assert raw is not None
    head = decode_head("c1", score, raw)
    assert head is not None and (head.term, head.channel, head.category) == ("5 workdays", "mail", "paspoort")
    assert decode_head("c1", score + 1, raw) is None
    callback = "a03ad4be-ae1a-52d9-b6fb-333b916e73c4-cb1"
    assert encode_head(callback, score, contact, None) is None  # a callback request's fields not at hand
