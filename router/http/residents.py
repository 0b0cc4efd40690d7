"""One resident across channels, over HTTP: the resident's other contacts (router.core.residents).

`GET /v1/contacts/{id}/related` (scope `read`) for systems; the workspace's contact page shows the same
list (router/http/workspace/pages.py). Both read it through `related_of`.
"""

from __future__ import annotations

from aiohttp import web

from router.core.erasure import identities_of_json
from router.core.residents import CANDIDATE_FIELDS, Related, related
from router.http import schemas
from router.http.auth import readable_contact
from router.http.body import error
from router.http.context import CTX, ApiContext

# How many contact ids per identity key the page reads at most (a shared address has many).
PAGE_PER_KEY = 200


async def related_of(ctx: ApiContext, cid: str, fields: dict[str, str]) -> list[Related]:
    """The other contacts of the resident of contact `cid` (its record's `fields`) in its tenant,
    received in the tenant's last `residents.related_months` months, newest first."""
    tenant_id = fields.get("tenant", "")
    tenant = ctx.tenants.get(tenant_id)
    ids = identities_of_json(fields.get("contact"))
    if tenant is None or not ids:
        return []
    [candidates] = await ctx.store.resident_contacts([(tenant_id, ids)], CANDIDATE_FIELDS, PAGE_PER_KEY)
    return related(cid, tenant_id, candidates, tenant.loaded.rules.residents, ctx.clock.now())


async def get_related(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    cid = request.match_info["id"]
    record = await readable_contact(request)
    if record is None:
        return error(404, f"no contact with id '{cid}'")
    found = await related_of(ctx, cid, record.fields)
    months = ctx.tenants[record.fields["tenant"]].loaded.rules.residents.related_months
    body = {"id": cid, "months": months, "related": [r.as_dict() for r in found]}
    return schemas.answer(schemas.RelatedContacts, body)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/contacts/{id}/related", get_related)
