"""Case work as a service: load a contact, take a decision (`router.core.casework`), commit the change.

Every change is an optimistic, atomic update of one contact in the case store: the store applies it
only if the contact's version is still the one the decision was taken on, so two agents acting on one
contact at once cannot both win; the loser's decision is taken again on the new state. The store writes
the messages the change must publish into the contact's outbox in the same step; they are then
published with confirms and removed. A crash in between leaves them in the outbox, and the scheduler's
relay publishes them later, so nothing is lost (consumers may see a message twice: dedupe on message_id).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from router import logs
from router.core import casework
from router.core.casework import CaseError, CaseState, Decision, Desk, parse_callback_id
from router.core.clock import Clock
from router.core.deadlines import soonest_open, time_left
from router.core.ports import CaseStore, Notifier, Outbound
from router.core.tenants import Tenant
from router.core.topology import Names
from router.core.worklist import ItemHead

log = logs.get("router.casework")

Allowed = Callable[[str], bool]


class Casework:
    def __init__(
        self,
        store: CaseStore,
        names: Names,
        tenants: Mapping[str, Tenant],
        clock: Clock,
        outbound: Outbound,
        notifier: Notifier | None = None,
    ):
        self.store = store
        self.names = names
        self.tenants = tenants
        self.clock = clock
        self.outbound = outbound
        # Mails residents their notices; without one (no acknowledgement sender) the team gets them.
        self.notifier = notifier

    # -- reading ------------------------------------------------------------------------------------

    async def load(self, cid: str) -> CaseState | None:
        return await self.store.load(cid)

    async def history(self, cid: str) -> list[dict[str, Any]]:
        return await self.store.history(cid)

    async def open_case(self, cid: str, allowed: Allowed) -> CaseState:
        """The contact if it exists and the caller may see its tenant; 404 otherwise (never 403)."""
        state = await self.store.load(cid)
        if state is None or "tenant" not in state.fields or not allowed(state.tenant):
            raise CaseError(404, f"no contact with id '{cid}'")
        if state.status == "routing":
            raise CaseError(409, "the contact is still being routed; try again in a moment")
        return state

    # -- writing ------------------------------------------------------------------------------------

    def desk(self, state: CaseState) -> Desk:
        mails = self.notifier is not None and self.notifier.can_mail(state.tenant)
        return Desk(self.tenants[state.tenant], self.names, self.clock.now(), mails)

    async def _decide(self, cid: str, allowed: Allowed, decide: Callable[[CaseState, Desk], Decision]) -> Any:
        """Load, decide, commit if nobody changed the contact meanwhile; decide again otherwise. A decision
        that changes nothing (the work was done already) is answered without a commit."""
        for _ in range(10):
            state = await self.open_case(cid, allowed)
            change, result = decide(state, self.desk(state))
            if change.is_empty() or await self.store.commit(state, change):
                await self.flush_outbox(state.cid)
                if self.notifier is not None:
                    for notice in change.notices:
                        self.notifier.send(notice)
                if isinstance(result, CaseError):
                    raise result
                return result
        raise CaseError(409, "the contact keeps changing; try again")

    async def flush_outbox(self, cid: str) -> int:
        """Publish what a change left in the contact's outbox; keep what the broker did not confirm."""
        sent = 0
        for raw, message in await self.store.outbox(cid):
            try:
                await self.outbound.publish(message)
            except Exception as exc:
                log.warning("outbox_publish_failed", contact_id=cid, error=type(exc).__name__)
                return sent
            await self.store.outbox_sent(cid, raw)
            sent += 1
        return sent

    # -- the agent's actions ------------------------------------------------------------------------
    # Each names the agent (`agent`, an id), the credential that vouches for it (`by`, its name) and,
    # optionally, the agent's display name (`agent_name`: the contact's history only).

    async def transfer(
        self,
        cid: str,
        *,
        to_team: str,
        note: str | None,
        agent: str,
        by: str,
        agent_name: str | None = None,
        from_team: str | None,
        if_match: str | None,
        allowed: Allowed,
    ) -> dict[str, Any]:
        if from_team is None and if_match is None:
            raise CaseError(
                428,
                "say which state you transfer from: body field 'from_team' or header If-Match with the "
                "contact's version, so two agents cannot both move the same contact",
            )
        try:
            result: dict[str, Any] = await self._decide(
                cid,
                allowed,
                lambda state, desk: casework.transfer(
                    state,
                    desk,
                    to_team=to_team,
                    note=note,
                    agent=agent,
                    by=by,
                    agent_name=agent_name,
                    from_team=from_team,
                    if_match=if_match,
                ),
            )
        except CaseError as exc:
            if exc.status == 409 and "transfers" in exc.body:
                log.info("transfer_refused", contact_id=cid, to_team=to_team, transfers=exc.body["transfers"])
            raise
        log.info("contact_transferred", contact_id=cid, team=result["team"], transfers=result["transfers"])
        return result

    async def request_callback(
        self,
        cid: str,
        *,
        team: str | None,
        reason: str,
        phone: str | None,
        preferred_time: str | None,
        agent: str,
        by: str,
        agent_name: str | None = None,
        allowed: Allowed,
    ) -> tuple[dict[str, Any], bool]:
        """The callback request, and whether it is new (False: the team's open one, asked again)."""
        known: set[str] = set()

        def decide(state: CaseState, desk: Desk) -> Decision:
            known.clear()
            known.update(cb["id"] for cb in state.callbacks.values())
            return casework.request_callback(
                state,
                desk,
                team=team,
                reason=reason,
                phone=phone,
                preferred_time=preferred_time,
                agent=agent,
                by=by,
                agent_name=agent_name,
            )

        result: dict[str, Any] = await self._decide(cid, allowed, decide)
        created = result["id"] not in known
        log.info(
            "callback_requested",
            contact_id=cid,
            callback_id=result["id"],
            team=result["team"],
            created=created,
        )
        return result, created

    async def record_attempt(
        self,
        cbid: str,
        *,
        outcome: str,
        note: str | None,
        agent: str,
        by: str,
        agent_name: str | None = None,
        allowed: Allowed,
    ) -> dict[str, Any]:
        parsed = parse_callback_id(cbid)
        if parsed is None:
            raise CaseError(404, f"no callback request with id '{cbid}'")
        result: dict[str, Any] = await self._decide(
            parsed[0],
            allowed,
            lambda state, desk: casework.record_attempt(
                state, desk, cbid, outcome=outcome, note=note, agent=agent, by=by, agent_name=agent_name
            ),
        )
        log.info("callback_attempted", contact_id=parsed[0], callback_id=cbid, outcome=outcome)
        return result

    async def close_callback(
        self,
        cbid: str,
        *,
        reason: str,
        note: str | None,
        agent: str,
        by: str,
        agent_name: str | None = None,
        allowed: Allowed,
    ) -> dict[str, Any]:
        parsed = parse_callback_id(cbid)
        if parsed is None:
            raise CaseError(404, f"no callback request with id '{cbid}'")
        result: dict[str, Any] = await self._decide(
            parsed[0],
            allowed,
            lambda state, desk: casework.close_callback(
                state, desk, cbid, reason=reason, note=note, agent=agent, by=by, agent_name=agent_name
            ),
        )
        log.info("callback_closed", contact_id=parsed[0], callback_id=cbid, reason=reason)
        return result

    async def extend(
        self,
        cid: str,
        *,
        kind: str,
        reason: str,
        agent: str,
        by: str,
        agent_name: str | None = None,
        allowed: Allowed,
    ) -> dict[str, Any]:
        result: dict[str, Any] = await self._decide(
            cid,
            allowed,
            lambda state, desk: casework.extend(
                state, desk, kind=kind, reason=reason, agent=agent, by=by, agent_name=agent_name
            ),
        )
        log.info("deadline_extended", contact_id=cid, kind=kind, notice=result["notice"]["channel"])
        return result

    async def record_response(
        self,
        cid: str,
        *,
        kind: str,
        note: str | None,
        agent: str,
        by: str,
        agent_name: str | None = None,
        allowed: Allowed,
    ) -> dict[str, Any]:
        result: dict[str, Any] = await self._decide(
            cid,
            allowed,
            lambda state, desk: casework.record_response(
                state, desk, kind=kind, note=note, agent=agent, by=by, agent_name=agent_name
            ),
        )
        return result

    async def close(
        self,
        cid: str,
        *,
        resolution: str,
        agent: str,
        by: str,
        agent_name: str | None = None,
        allowed: Allowed,
    ) -> dict[str, Any]:
        result: dict[str, Any] = await self._decide(
            cid,
            allowed,
            lambda state, desk: casework.close(
                state, desk, resolution=resolution, agent=agent, by=by, agent_name=agent_name
            ),
        )
        log.info("contact_closed", contact_id=cid)
        return result

    async def take(
        self, cid: str, *, agent: str, by: str, agent_name: str | None = None, allowed: Allowed
    ) -> dict[str, Any]:
        result: dict[str, Any] = await self._decide(
            cid,
            allowed,
            lambda state, desk: casework.take(state, desk, agent=agent, by=by, agent_name=agent_name),
        )
        log.info("contact_taken", contact_id=cid, agent=agent)
        return result

    # -- work lists ---------------------------------------------------------------------------------

    async def items(
        self, tenant: str, team: str, *, limit: int = 100, offset: int = 0
    ) -> list[dict[str, Any]]:
        """A team's open items, soonest open deadline first (of any kind), each with that deadline's kind
        and term and the time left on the term's own clock."""
        rows = await self.store.team_items(tenant, team, offset=offset, limit=limit)
        return self._timed(tenant, [work_item(m, row, contact_row) for m, _s, row, contact_row in rows])

    async def items_by_id(self, tenant: str, members: list[tuple[str, float]]) -> list[dict[str, Any]]:
        """The given members of a work list (id, score), as `items` shows them; those gone left out."""
        rows = await self.store.items_of(members)
        return self._timed(tenant, [work_item(m, row, contact_row) for m, _s, row, contact_row in rows])

    async def item_heads(self, tenant: str, team: str) -> list[ItemHead]:
        """Every open item of a team, soonest open deadline first, with only what counting and filtering
        need: a work list of thousands without reading each resident's message. The deadline is the
        item's place in the list (kept equal to its soonest open deadline by every change)."""
        return await self.store.team_item_heads(tenant, team)

    def _timed(self, tenant: str, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        calendar = self.tenants[tenant].calendar
        now = self.clock.now()
        for item in items:
            due = datetime.fromisoformat(item["due"]) if item["due"] else None
            if due is not None:
                item["due"] = due.astimezone(calendar.zone).isoformat()
                left = time_left(calendar, now, due, item["term"])
                item["working_time_left_seconds"] = int(left.total_seconds())
                item["overdue"] = now > due
        return items


def _last_note(contact: dict[str, Any]) -> str | None:
    """The note of the latest hand-over that had one (warm transfer)."""
    for hop in reversed(contact.get("hops") or []):
        if hop.get("note"):
            note: str = hop["note"]
            return note
    return None


def work_item(member: str, row: dict[str, str], contact_row: dict[str, str]) -> dict[str, Any]:
    """What a work list shows of one member, a callback request or a contact: what the agent needs to
    act (who, about what, through which channel, since when, the last hand-over note) and the deadline
    it is listed by."""
    contact: dict[str, Any] = json.loads(contact_row["contact"]) if "contact" in contact_row else {}
    sender = contact.get("sender") or {}
    common: dict[str, Any] = {
        "reference": contact.get("reference"),
        "channel": contact_row.get("channel") or contact.get("channel"),
        "received_at": contact_row.get("received_at") or contact.get("received_at"),
        "sender_name": sender.get("name"),
        "subject": contact.get("subject"),
        "last_note": _last_note(contact),
        "category": contact_row.get("category") or None,
        "owner": contact_row.get("owner") or None,
    }
    timing: dict[str, Any] = {"working_time_left_seconds": None, "overdue": False}
    if parse_callback_id(member):
        return {
            "kind": "callback_request",
            "id": member,
            "contact_id": row["contact_id"],
            "due": row.get("due") or None,
            "deadline_kind": "callback",
            "term": row.get("term") or None,
            **timing,
            **common,
            "reason": row.get("reason"),
            "phone": row.get("phone") or None,
            "preferred_time": row.get("preferred_time") or None,
            "attempts": int(row.get("attempts", "0")),
            "counted_from": row.get("counted_from") or row.get("created_at") or None,
        }
    first = soonest_open(
        json.loads(row.get("deadlines", "[]")), row, "acknowledged_at" in (contact.get("metadata") or {})
    )
    return {
        "kind": "contact",
        "id": member,
        "contact_id": member,
        "due": first.due.isoformat() if first else None,
        "deadline_kind": first.kind if first else None,
        "term": first.term if first else None,
        **timing,
        **common,
        "transfers": int(row.get("transfers", "0")),
        "status": row.get("status"),
    }
