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
from router.core.casework import NO_DEADLINE_SCORE, CaseError, CaseState, Decision, Desk, parse_callback_id
from router.core.clock import Clock
from router.core.ports import CaseStore, Outbound
from router.core.tenants import Tenant
from router.core.topology import Names

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
    ):
        self.store = store
        self.names = names
        self.tenants = tenants
        self.clock = clock
        self.outbound = outbound

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
        return Desk(self.tenants[state.tenant], self.names, self.clock.now())

    async def _decide(self, cid: str, allowed: Allowed, decide: Callable[[CaseState, Desk], Decision]) -> Any:
        """Load, decide, commit if nobody changed the contact meanwhile; decide again otherwise."""
        for _ in range(10):
            state = await self.open_case(cid, allowed)
            change, result = decide(state, self.desk(state))
            if await self.store.commit(state, change):
                await self.flush_outbox(state.cid)
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
    ) -> dict[str, Any]:
        result: dict[str, Any] = await self._decide(
            cid,
            allowed,
            lambda state, desk: casework.request_callback(
                state,
                desk,
                team=team,
                reason=reason,
                phone=phone,
                preferred_time=preferred_time,
                agent=agent,
                by=by,
                agent_name=agent_name,
            ),
        )
        log.info("callback_requested", contact_id=cid, callback_id=result["id"], team=result["team"])
        return result

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

    # -- work lists ---------------------------------------------------------------------------------

    async def items(
        self, tenant: str, team: str, *, limit: int = 100, offset: int = 0
    ) -> list[dict[str, Any]]:
        """A team's open items, soonest deadline first, with the working time left in its calendar."""
        calendar = self.tenants[tenant].calendar
        now = self.clock.now()
        out = []
        for member, score, row in await self.store.team_items(tenant, team, offset=offset, limit=limit):
            due = datetime.fromtimestamp(score / 1000, tz=now.tzinfo) if score < NO_DEADLINE_SCORE else None
            left = calendar.working_time_left(now, due) if due is not None else None
            item: dict[str, Any] = {
                "due": due.astimezone(calendar.zone).isoformat() if due else None,
                "working_time_left_seconds": int(left.total_seconds()) if left is not None else None,
                "overdue": bool(due and now > due),
            }
            item.update(work_item(member, row, due is not None))
            out.append(item)
        return out


def work_item(member: str, row: dict[str, str], has_due: bool) -> dict[str, Any]:
    """What a work list shows of one member: a callback request or a contact."""
    if parse_callback_id(member):
        return {
            "kind": "callback_request",
            "id": member,
            "contact_id": row["contact_id"],
            "deadline_kind": "callback",
            "reason": row.get("reason"),
            "attempts": int(row.get("attempts", "0")),
            "preferred_time": row.get("preferred_time") or None,
        }
    contact = json.loads(row["contact"]) if "contact" in row else {}
    return {
        "kind": "contact",
        "id": member,
        "deadline_kind": "respond" if has_due else None,
        "reference": contact.get("reference"),
        "channel": row.get("channel"),
        "category": row.get("category") or None,
        "subject": contact.get("subject"),
        "transfers": int(row.get("transfers", "0")),
        "status": row.get("status"),
    }
