"""The development sign-in's demo agents, derived from the rules: one agent per team of each tenant,
and one supervisor (teamleider) per tenant who works in all its teams."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from router.core.tenants import Tenant
from router.http.workspace.session import SignedInAgent

DEMO_SESSION = timedelta(hours=9)


@dataclass(frozen=True)
class DemoAgent:
    tenant: str
    agent_id: str
    display_name: str
    teams: frozenset[str]
    roles: frozenset[str]
    label: str  # what the sign-in page says: the team, or "teamleider"

    def signed_in(self, now: datetime | None = None) -> SignedInAgent:
        return SignedInAgent(
            tenant=self.tenant,
            agent_id=self.agent_id,
            display_name=self.display_name,
            teams=self.teams,
            roles=self.roles,
            via="development",
            expires_at=(now or datetime.now(UTC)) + DEMO_SESSION,
        )


def _id(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "-", text)[:64]


def demo_agents(tenants: Mapping[str, Tenant]) -> list[DemoAgent]:
    out: list[DemoAgent] = []
    for tenant_id in sorted(tenants):
        rules = tenants[tenant_id].loaded.rules
        for team in rules.teams:
            out.append(
                DemoAgent(
                    tenant_id,
                    _id(f"demo-{tenant_id}-{team.id}"),
                    f"Demo medewerker {team.name}",
                    frozenset({team.id}),
                    frozenset({"agent"}),
                    team.name,
                )
            )
        out.append(
            DemoAgent(
                tenant_id,
                _id(f"demo-{tenant_id}-teamleider"),
                "Demo teamleider",
                frozenset(rules.team_ids()),
                frozenset({"agent", "supervisor"}),
                "Teamleider (alle teams)",
            )
        )
    return out
