"""Every view of a contact page and every action goes into the history store's audit table: who (the
agent's id), when, which contact, what (a code). Never a message body, a name or a note."""

from __future__ import annotations

from aiohttp import web

from router import logs
from router.core.history import audit_entry
from router.http.context import CTX
from router.http.workspace.context import WORKSPACE
from router.http.workspace.session import SignedInAgent

log = logs.get("router.http.workspace.audit")


def credential_of(agent: SignedInAgent) -> str:
    """The audit's `credential`: how the agent signed in (workspace-oidc, workspace-development)."""
    return f"workspace-{agent.via}"


async def record(request: web.Request, agent: SignedInAgent, contact_id: str, action: str) -> None:
    """Write one audit row. Without a history store there is no audit: the workspace said so at start."""
    store = request.app[WORKSPACE].history
    if store is None:
        return
    entry = audit_entry(
        at=request.app[CTX].clock.now(),
        tenant=agent.tenant,
        contact_id=contact_id,
        action=action,
        agent=agent.agent_id,
        credential=credential_of(agent),
    )
    await store.audit(entry)
