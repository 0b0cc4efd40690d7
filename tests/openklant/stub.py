"""A contract stub of the Klantinteracties API (Open Klant 2.18, API 0.9) on a loopback port.

Written from the published OpenAPI document (maykinmedia/open-klant,
src/openklant/components/klantinteracties/openapi.yaml: the writable fields of Klantcontact,
Betrokkene, DigitaalAdres, Onderwerpobject, Actor, ActorKlantcontact, InterneTaak and MaakKlantcontact,
their maxLength, enums, required lists and each list endpoint's query parameters) and from what a real
instance does beyond the document (issue 20):

- `Authorization: Token <key>`; any other scheme (`Bearer`) is no credentials: 401;
- a 400 has `invalidParams: [{name, code, reason}]`, names camelCase and dotted, reasons in Dutch (and,
  like Django's, some quote the value sent: an exporter must not copy them into logs);
- unknown body fields are ignored; unknown query parameters are a 400 (`unknown-parameters`), which
  includes date ranges on klantcontacten;
- a digitaal adres needs the key `verstrektDoorPartij` (null allowed); phone numbers must match the
  stricter observed pattern; `nummer` is digits only, at most 10, unique;
- several onderwerpobject filters on klantcontacten at once return a klantcontact once per filter;
- an internetaak takes `toegewezenAanActoren` or the deprecated `toegewezenAanActor`, not both;
  PATCH `status: verwerkt` fills `afgehandeldOp`.

Faults on demand: `outage(seconds, status)` answers every request with 503 (or another status) for a
while; `delay` slows every answer. Everything it holds is in `self.objects`, for the tests' checks.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

PHONE = re.compile(r"^(0[1-9][0-9]{8}|\+[0-9]{9,15}|00[0-9]{7,13})$")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
DIGITS = re.compile(r"^[0-9]{1,10}$")
API = "/klantinteracties/api/v1"


@dataclass(frozen=True)
class F:
    """One writable field of a schema."""

    kind: str  # str | bool | datetime | fk:<resource> | fks:<resource> | obj:<schema> | enum
    required: bool = False
    max_length: int | None = None
    nullable: bool = False
    choices: tuple[str, ...] = ()
    pattern: re.Pattern[str] | None = None


_IDENT = {
    k: F("str", max_length=200) for k in ("objectId", "codeObjecttype", "codeRegister", "codeSoortObjectId")
}
_NAME = {
    "voorletters": F("str", max_length=10),
    "voornaam": F("str", max_length=200),
    "voorvoegselAchternaam": F("str", max_length=10),
    "achternaam": F("str", max_length=200),
}
_ORG_UNIT = {
    "omschrijving": F("str", max_length=200),
    "emailadres": F("str", max_length=254),
    "faxnummer": F("str", max_length=20),
    "telefoonnummer": F("str", max_length=20),
}

SCHEMAS: dict[str, dict[str, F]] = {
    "Onderwerpobjectidentificator": _IDENT,
    "Actoridentificator": _IDENT,
    "Contactnaam": _NAME,
    "OrganisatorischeEenheid": _ORG_UNIT,
    "klantcontacten": {
        "nummer": F("str", max_length=10, pattern=DIGITS),
        "kanaal": F("str", required=True, max_length=50),
        "onderwerp": F("str", required=True, max_length=200),
        "inhoud": F("str", max_length=1000),
        "indicatieContactGelukt": F("bool", nullable=True),
        "taal": F("str", required=True, max_length=3),
        "vertrouwelijk": F("bool", required=True),
        "plaatsgevondenOp": F("datetime"),
    },
    "betrokkenen": {
        "wasPartij": F("fk:partijen", nullable=True),
        "hadKlantcontact": F("fk:klantcontacten", required=True),
        "contactnaam": F("obj:Contactnaam", nullable=True),
        "rol": F("enum", required=True, choices=("klant", "vertegenwoordiger")),
        "organisatienaam": F("str", max_length=200),
        "initiator": F("bool", required=True),
    },
    "digitaleadressen": {
        "verstrektDoorBetrokkene": F("fk:betrokkenen", nullable=True),
        "verstrektDoorPartij": F("fk:partijen", nullable=True),
        "adres": F("str", required=True, max_length=80),
        "soortDigitaalAdres": F("enum", required=True, choices=("email", "telefoonnummer", "overig")),
        "isStandaardAdres": F("bool"),
        "omschrijving": F("str", max_length=40),
        "referentie": F("str", max_length=50, pattern=re.compile(r"^[-a-zA-Z0-9_]+$")),
    },
    "onderwerpobjecten": {
        "klantcontact": F("fk:klantcontacten", nullable=True),
        "wasKlantcontact": F("fk:klantcontacten", nullable=True),
        "onderwerpobjectidentificator": F("obj:Onderwerpobjectidentificator", nullable=True),
    },
    "actoren": {
        "naam": F("str", required=True, max_length=200),
        "soortActor": F(
            "enum",
            required=True,
            choices=("geautomatiseerde_actor", "medewerker", "organisatorische_eenheid"),
        ),
        "indicatieActief": F("bool"),
        "actoridentificator": F("obj:Actoridentificator", nullable=True),
        "actorIdentificatie": F("obj:OrganisatorischeEenheid", nullable=True),
    },
    "actorklantcontacten": {
        "actor": F("fk:actoren", required=True),
        "klantcontact": F("fk:klantcontacten", required=True),
    },
    "internetaken": {
        "nummer": F("str", max_length=10, pattern=DIGITS),
        "gevraagdeHandeling": F("str", required=True, max_length=200),
        "aanleidinggevendKlantcontact": F("fk:klantcontacten", required=True),
        "toegewezenAanActor": F("fk:actoren"),
        "toegewezenAanActoren": F("fks:actoren"),
        "toelichting": F("str", max_length=1000),
        "status": F("enum", required=True, choices=("te_verwerken", "verwerkt")),
        "afgehandeldOp": F("datetime", nullable=True),
    },
}

_PAGING = {"page", "pageSize"}
_OO = (
    "onderwerpobjectidentificatorCodeObjecttype",
    "onderwerpobjectidentificatorCodeRegister",
    "onderwerpobjectidentificatorCodeSoortObjectId",
    "onderwerpobjectidentificatorObjectId",
)
# The query parameters of each list endpoint, as the document lists them.
QUERY: dict[str, set[str]] = {
    "klantcontacten": {
        "expand",
        "hadBetrokkene__url",
        "hadBetrokkene__uuid",
        "indicatieContactGelukt",
        "inhoud",
        "kanaal",
        "nummer",
        "onderwerp",
        "plaatsgevondenOp",
        "vertrouwelijk",
        "onderwerpobject__url",
        "onderwerpobject__uuid",
        "wasOnderwerpobject__url",
        "wasOnderwerpobject__uuid",
        *(f"onderwerpobject__{p}" for p in _OO),
        *(f"wasOnderwerpobject__{p}" for p in _OO),
    },
    "betrokkenen": {
        "hadKlantcontact__uuid",
        "hadKlantcontact__url",
        "hadKlantcontact__nummer",
        "organisatienaam",
    },
    "digitaleadressen": {
        "adres",
        "adres__icontains",
        "expand",
        "omschrijving",
        "referentie",
        "soortDigitaalAdres",
        "verstrektDoorBetrokkene__rol",
        "verstrektDoorBetrokkene__url",
        "verstrektDoorBetrokkene__uuid",
        "verstrektDoorPartij__url",
        "verstrektDoorPartij__uuid",
    },
    "onderwerpobjecten": set(_OO),
    "actoren": {
        "actoridentificatorCodeObjecttype",
        "actoridentificatorCodeRegister",
        "actoridentificatorCodeSoortObjectId",
        "actoridentificatorObjectId",
        "indicatieActief",
        "naam",
        "soortActor",
    },
    "actorklantcontacten": {"actor__url", "actor__uuid", "klantcontact__url", "klantcontact__uuid"},
    "internetaken": {
        "aanleidinggevendKlantcontact__url",
        "aanleidinggevendKlantcontact__uuid",
        "actoren__naam",
        "klantcontact__nummer",
        "klantcontact__uuid",
        "nummer",
        "status",
        "toegewezenAanActor__url",
        "toegewezenAanActor__uuid",
        "toegewezenOp",
    },
}


class Invalid(Exception):
    def __init__(self, params: list[dict[str, str]], status: int = 400):
        super().__init__("invalid")
        self.params = params
        self.status = status


def _param(name: str, code: str, reason: str) -> dict[str, str]:
    return {"name": name, "code": code, "reason": reason}


@dataclass
class OpenKlantStub:
    token: str = "stub-token"
    objects: dict[str, dict[str, dict[str, Any]]] = field(
        default_factory=lambda: {name: {} for name in QUERY}
    )
    requests: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    delay: float = 0.0
    url: str = ""
    # (resource, field) pairs refused on create, as a stricter Open Klant would: `refuse`.
    refused: set[tuple[str, str]] = field(default_factory=set)
    _down_until: float = 0.0
    _down_status: int = 503
    _down_refusals: int = 0  # requests still to refuse once the time is up
    _runner: web.AppRunner | None = None

    # -- running ------------------------------------------------------------------------------------

    async def start(self, port: int = 0) -> OpenKlantStub:
        app = web.Application(client_max_size=1024**2)
        app.router.add_post(f"{API}/maak-klantcontact", self._maak)
        for resource in QUERY:
            app.router.add_get(f"{API}/{resource}", self._list)
            app.router.add_post(f"{API}/{resource}", self._create)
            app.router.add_get(f"{API}/{resource}/{{uuid}}", self._retrieve)
            app.router.add_patch(f"{API}/{resource}/{{uuid}}", self._patch)
            app.router.add_delete(f"{API}/{resource}/{{uuid}}", self._delete)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        bound = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{bound}{API}"
        return self

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> OpenKlantStub:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def outage(self, seconds: float, status: int = 503, at_least: int = 1) -> None:
        """Answer every request with `status` for `seconds` from now, and until `at_least` requests were
        answered so: on a loaded machine the exporter may ask nothing within the seconds."""
        self._down_until = time.monotonic() + seconds
        self._down_status = status
        self._down_refusals = at_least if seconds > 0 else 0  # outage(0): over now

    def refuse(self, resource: str, name: str) -> None:
        """From now on refuse creating `resource` with field `name` (400 invalid_choice, value quoted in
        the reason as Django does)."""
        self.refused.add((resource, name))

    # -- what a test checks -------------------------------------------------------------------------

    def klantcontacten_of(self, contact_id: str) -> list[dict[str, Any]]:
        """The klantcontacten whose onderwerpobjecten name this contact id."""
        kcs = {
            o["klantcontact"]["uuid"]
            for o in self.objects["onderwerpobjecten"].values()
            if o.get("klantcontact")
            and (o.get("onderwerpobjectidentificator") or {}).get("objectId") == contact_id
        }
        return [self.objects["klantcontacten"][k] for k in sorted(kcs)]

    def internetaken_tagged(self, callback_id: str) -> list[dict[str, Any]]:
        first = f"Terugbelverzoek {callback_id}"
        return [
            t
            for t in self.objects["internetaken"].values()
            if t.get("toelichting", "").split("\n", 1)[0] == first
        ]

    # -- requests -----------------------------------------------------------------------------------

    async def _guard(self, request: web.Request) -> web.Response | None:
        self.requests[f"{request.method} {self._resource(request)}"] += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        if time.monotonic() < self._down_until or self._down_refusals > 0:
            self._down_refusals = max(0, self._down_refusals - 1)
            return self._answer(
                {"title": "Service Unavailable", "status": self._down_status}, self._down_status
            )
        header = request.headers.get("Authorization", "")
        if header != f"Token {self.token}":
            # DRF's TokenAuthentication: another scheme is no credentials at all.
            code = "authentication_failed" if header.startswith("Token ") else "not_authenticated"
            title = (
                "Ongeldige token."
                if code == "authentication_failed"
                else "Authenticatiegegevens zijn niet opgegeven."
            )
            return self._answer({"code": code, "title": title, "status": 401}, 401)
        return None

    def _answer(self, doc: Any, status: int = 200) -> web.Response:
        self.statuses[status] += 1
        if status == 204:
            return web.Response(status=204)
        return web.json_response(doc, status=status)

    def _invalid(self, exc: Invalid) -> web.Response:
        return self._answer(
            {
                "type": "http://localhost/ref/fouten/ValidationError/",
                "code": "invalid",
                "title": "Invalid input.",
                "status": exc.status,
                "invalidParams": exc.params,
            },
            exc.status,
        )

    async def _body(self, request: web.Request) -> dict[str, Any]:
        try:
            doc = await request.json()
        except ValueError as exc:
            raise Invalid([_param("nonFieldErrors", "parse_error", "JSON parse error")]) from exc
        if not isinstance(doc, dict):
            raise Invalid([_param("nonFieldErrors", "invalid", "Ongeldige data. Verwacht een dictionary.")])
        return doc

    def _resource(self, request: web.Request) -> str:
        return request.path.removeprefix(API + "/").split("/")[0]

    async def _list(self, request: web.Request) -> web.Response:
        if (refused := await self._guard(request)) is not None:
            return refused
        resource = self._resource(request)
        allowed = QUERY[resource] | _PAGING
        unknown = sorted(set(request.query) - allowed)
        if unknown:
            return self._invalid(
                Invalid(
                    [
                        _param(
                            "nonFieldErrors",
                            "unknown-parameters",
                            "Onbekende query parameters: " + ", ".join(unknown),
                        )
                    ]
                )
            )
        items = [i for i in self.objects[resource].values() if self._matches(resource, i, request.query)]
        if resource == "klantcontacten":
            filters = [p for p in request.query if p.startswith("onderwerpobject__")]
            items = [i for i in items for _ in range(max(1, len(filters)))]  # the join's duplicates
        size = int(request.query.get("pageSize", "100") or 100)
        page = int(request.query.get("page", "1") or 1)
        chunk = items[(page - 1) * size : page * size]
        more = page * size < len(items)
        return self._answer(
            {
                "count": len(items),
                "next": f"{self.url}/{resource}?page={page + 1}" if more else None,
                "previous": None,
                "results": [self._expanded(resource, i) for i in chunk],
            }
        )

    def _matches(self, resource: str, item: dict[str, Any], query: Any) -> bool:
        for name, value in query.items():
            if name in _PAGING or name == "expand":
                continue
            if not self._match_one(resource, item, name, value):
                return False
        return True

    def _match_one(self, resource: str, item: dict[str, Any], name: str, value: str) -> bool:
        if resource == "klantcontacten" and name.startswith(("onderwerpobject__", "wasOnderwerpobject__")):
            link = "klantcontact" if name.startswith("onderwerpobject__") else "wasKlantcontact"
            sub = name.split("__", 1)[1]
            for o in self.objects["onderwerpobjecten"].values():
                if (o.get(link) or {}).get("uuid") != item["uuid"]:
                    continue
                if sub == "uuid" and o["uuid"] == value:
                    return True
                ident = o.get("onderwerpobjectidentificator") or {}
                key = sub.removeprefix("onderwerpobjectidentificator")
                if key and ident.get(key[0].lower() + key[1:]) == value:
                    return True
            return False
        if name.startswith(("onderwerpobjectidentificator", "actoridentificator")):
            group = "onderwerpobjectidentificator" if name.startswith("onderwerp") else "actoridentificator"
            key = name.removeprefix(group)
            return (item.get(group) or {}).get(key[0].lower() + key[1:]) == value
        if (
            name in ("klantcontact__uuid", "aanleidinggevendKlantcontact__uuid")
            and resource == "internetaken"
        ):
            return (item.get("aanleidinggevendKlantcontact") or {}).get("uuid") == value
        if name == "toegewezenAanActor__uuid":
            return value in [a["uuid"] for a in item.get("toegewezenAanActoren", [])]
        if name.endswith("__uuid"):
            return (item.get(name.removesuffix("__uuid")) or {}).get("uuid") == value
        if name.endswith("__url") or "__" in name:
            return True  # accepted, not needed by these tests
        current = item.get(name)
        if isinstance(current, bool):
            return str(current).lower() == value.lower()
        return str(current) == value

    async def _retrieve(self, request: web.Request) -> web.Response:
        if (refused := await self._guard(request)) is not None:
            return refused
        resource = self._resource(request)
        item = self.objects[resource].get(request.match_info["uuid"])
        if item is None:
            return self._answer({"code": "not_found", "title": "Niet gevonden.", "status": 404}, 404)
        return self._answer(self._expanded(resource, item))

    async def _delete(self, request: web.Request) -> web.Response:
        if (refused := await self._guard(request)) is not None:
            return refused
        resource = self._resource(request)
        if self.objects[resource].pop(request.match_info["uuid"], None) is None:
            return self._answer({"code": "not_found", "title": "Niet gevonden.", "status": 404}, 404)
        return self._answer(None, 204)

    async def _create(self, request: web.Request) -> web.Response:
        if (refused := await self._guard(request)) is not None:
            return refused
        resource = self._resource(request)
        try:
            data = self._validate(resource, await self._body(request), partial=False)
        except Invalid as exc:
            return self._invalid(exc)
        return self._answer(self._expanded(resource, self._store(resource, data)), 201)

    async def _patch(self, request: web.Request) -> web.Response:
        if (refused := await self._guard(request)) is not None:
            return refused
        resource = self._resource(request)
        item = self.objects[resource].get(request.match_info["uuid"])
        if item is None:
            return self._answer({"code": "not_found", "title": "Niet gevonden.", "status": 404}, 404)
        try:
            data = self._validate(resource, await self._body(request), partial=True, current=item)
        except Invalid as exc:
            return self._invalid(exc)
        if (
            resource == "internetaken"
            and data.get("status") == "verwerkt"
            and item.get("status") != "verwerkt"
        ):
            data.setdefault("afgehandeldOp", datetime.now(UTC).isoformat())
        item.update(data)
        return self._answer(self._expanded(resource, item))

    async def _maak(self, request: web.Request) -> web.Response:
        """Klantcontact, betrokkene and onderwerpobject in one transaction: all or nothing."""
        if (refused := await self._guard(request)) is not None:
            return refused
        try:
            body = await self._body(request)
            if not isinstance(body.get("klantcontact"), dict):
                raise Invalid([_param("klantcontact", "required", "Dit veld is vereist.")])
            kc = self._validate("klantcontacten", body["klantcontact"], partial=False, prefix="klantcontact.")
            b = o = None
            if isinstance(body.get("betrokkene"), dict):
                b = self._validate(
                    "betrokkenen",
                    body["betrokkene"],
                    partial=False,
                    prefix="betrokkene.",
                    skip={"hadKlantcontact"},
                )
            if isinstance(body.get("onderwerpobject"), dict):
                o = self._validate(
                    "onderwerpobjecten",
                    body["onderwerpobject"],
                    partial=False,
                    prefix="onderwerpobject.",
                    skip={"klantcontact"},
                )
        except Invalid as exc:
            return self._invalid(exc)
        made = self._store("klantcontacten", kc)
        ref = {"uuid": made["uuid"], "url": made["url"]}
        out: dict[str, Any] = {"klantcontact": None, "betrokkene": None, "onderwerpobject": None}
        if b is not None:
            out["betrokkene"] = self._expanded(
                "betrokkenen", self._store("betrokkenen", {**b, "hadKlantcontact": ref})
            )
        if o is not None:
            out["onderwerpobject"] = self._expanded(
                "onderwerpobjecten", self._store("onderwerpobjecten", {**o, "klantcontact": ref})
            )
        out["klantcontact"] = self._expanded("klantcontacten", made)
        return self._answer(out, 201)

    # -- validation ---------------------------------------------------------------------------------

    def _validate(
        self,
        resource: str,
        body: dict[str, Any],
        *,
        partial: bool,
        prefix: str = "",
        skip: set[str] = frozenset(),  # type: ignore[assignment]
        current: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        schema = SCHEMAS[resource]
        problems: list[dict[str, str]] = []
        out: dict[str, Any] = {}
        for name, spec in schema.items():
            if name in skip:
                continue
            where = prefix + name
            if name not in body:
                if spec.required and not partial:
                    problems.append(_param(where, "required", "Dit veld is vereist."))
                continue
            value = body[name]
            problem = self._check(where, spec, value)
            if problem:
                problems.extend(problem)
            else:
                out[name] = value
        problems += self._rules(resource, body, out, prefix, partial, current)
        for refused_resource, name in sorted(self.refused):
            if refused_resource == resource and name in body and not partial:
                problems.append(
                    _param(prefix + name, "invalid_choice", f'"{body[name]}" is een ongeldige keuze.')
                )
        if problems:
            raise Invalid(problems)
        return out

    def _check(self, where: str, spec: F, value: Any) -> list[dict[str, str]]:
        if value is None:
            return [] if spec.nullable else [_param(where, "null", "Dit veld mag niet leeg zijn.")]
        kind = spec.kind
        if kind in ("str", "enum", "datetime") and not isinstance(value, str):
            return [_param(where, "invalid", "Geen geldige string.")]
        if kind == "str":
            if spec.required and not value.strip():
                return [_param(where, "blank", "Dit veld mag niet leeg zijn.")]
            if spec.max_length is not None and len(value) > spec.max_length:
                return [
                    _param(
                        where,
                        "max_length",
                        f"Zorg ervoor dat dit veld niet meer dan {spec.max_length} karakters bevat.",
                    )
                ]
            if spec.pattern is not None and value and not spec.pattern.fullmatch(value):
                return [_param(where, "invalid", "Voer een geldige waarde in.")]
        elif kind == "enum":
            if value not in spec.choices:
                return [_param(where, "invalid_choice", f'"{value}" is een ongeldige keuze.')]
        elif kind == "bool":
            if not isinstance(value, bool):
                return [_param(where, "invalid", "Vereist een geldige boolean.")]
        elif kind == "datetime":
            try:
                parsed = datetime.fromisoformat(value)
            except ValueError:
                return [_param(where, "invalid", "Datetime heeft een ongeldig formaat.")]
            if parsed.tzinfo is None:
                return [_param(where, "invalid", "Datetime heeft een ongeldig formaat.")]
        elif kind.startswith("fk:"):
            return self._fk(where, kind[3:], value)
        elif kind.startswith("fks:"):
            if not isinstance(value, list):
                return [_param(where, "not_a_list", "Verwachtte een lijst.")]
            return [p for i, v in enumerate(value) for p in self._fk(f"{where}.{i}", kind[4:], v)]
        elif kind.startswith("obj:"):
            if not isinstance(value, dict):
                return [_param(where, "invalid", "Ongeldige data. Verwacht een dictionary.")]
            problems = []
            for name, sub in SCHEMAS[kind[4:]].items():
                if name in value:
                    problems += self._check(f"{where}.{name}", sub, value[name])
            return problems
        return []

    def _fk(self, where: str, resource: str, value: Any) -> list[dict[str, str]]:
        if not isinstance(value, dict) or not isinstance(value.get("uuid"), str):
            return [_param(f"{where}.uuid", "required", "Dit veld is vereist.")]
        if resource != "partijen" and value["uuid"] not in self.objects.get(resource, {}):
            return [
                _param(f"{where}.uuid", "does_not_exist", f"Object met uuid={value['uuid']} bestaat niet.")
            ]
        return []

    def _rules(
        self,
        resource: str,
        body: dict[str, Any],
        out: dict[str, Any],
        prefix: str,
        partial: bool,
        current: dict[str, Any] | None,
    ) -> list[dict[str, str]]:
        """What a real Open Klant checks beyond the schema."""
        problems = []
        if resource == "digitaleadressen":
            if not partial and "verstrektDoorPartij" not in body:
                problems.append(_param(prefix + "verstrektDoorPartij", "required", "Dit veld is vereist."))
            kind = out.get("soortDigitaalAdres", (current or {}).get("soortDigitaalAdres"))
            adres = out.get("adres")
            if isinstance(adres, str) and kind == "email" and not EMAIL.fullmatch(adres):
                problems.append(_param(prefix + "adres", "invalid", "Voer een geldig e-mailadres in."))
            if isinstance(adres, str) and kind == "telefoonnummer" and not PHONE.fullmatch(adres):
                problems.append(
                    _param(prefix + "adres", "invalid", "Het opgegeven telefoonnummer is ongeldig.")
                )
        if resource in ("klantcontacten", "internetaken") and out.get("nummer"):
            taken = [
                i
                for i in self.objects[resource].values()
                if i.get("nummer") == out["nummer"] and i is not current
            ]
            if taken:
                problems.append(
                    _param(prefix + "nummer", "unique", "Er bestaat al een object met dit nummer.")
                )
        if resource == "internetaken":
            both = "toegewezenAanActor" in body and "toegewezenAanActoren" in body
            if both:
                problems.append(
                    _param(
                        prefix + "nonFieldErrors",
                        "invalid",
                        "`toegewezenAanActor` en `toegewezenAanActoren` kunnen niet beide worden gebruikt.",
                    )
                )
            elif not partial and not body.get("toegewezenAanActoren") and not body.get("toegewezenAanActor"):
                problems.append(_param(prefix + "toegewezenAanActoren", "required", "Dit veld is vereist."))
        return problems

    # -- storing and answering ----------------------------------------------------------------------

    def _store(self, resource: str, data: dict[str, Any]) -> dict[str, Any]:
        ident = str(uuid.uuid4())
        item = {"uuid": ident, "url": f"{self.url}/{resource}/{ident}", **data}
        if resource == "internetaken":
            if "toegewezenAanActor" in item:
                item["toegewezenAanActoren"] = [item.pop("toegewezenAanActor")]
            item["toegewezenOp"] = datetime.now(UTC).isoformat()
            if item.get("status") == "verwerkt":
                item.setdefault("afgehandeldOp", datetime.now(UTC).isoformat())
        self.objects[resource][ident] = item
        return item

    def _ref(self, resource: str, item: dict[str, Any]) -> dict[str, str]:
        return {"uuid": item["uuid"], "url": item["url"]}

    def _expanded(self, resource: str, item: dict[str, Any]) -> dict[str, Any]:
        """The object as Open Klant shows it: with its read-only reverse relations."""
        out = dict(item)
        if resource == "klantcontacten":
            k = item["uuid"]
            out["hadBetrokkenen"] = [
                self._ref("betrokkenen", b)
                for b in self.objects["betrokkenen"].values()
                if b["hadKlantcontact"]["uuid"] == k
            ]
            out["gingOverOnderwerpobjecten"] = [
                self._ref("onderwerpobjecten", o)
                for o in self.objects["onderwerpobjecten"].values()
                if (o.get("klantcontact") or {}).get("uuid") == k
            ]
            out["leiddeTotInterneTaken"] = [
                self._ref("internetaken", t)
                for t in self.objects["internetaken"].values()
                if t["aanleidinggevendKlantcontact"]["uuid"] == k
            ]
            out["hadBetrokkenActoren"] = [
                self.objects["actoren"][a["actor"]["uuid"]]
                for a in self.objects["actorklantcontacten"].values()
                if a["klantcontact"]["uuid"] == k and a["actor"]["uuid"] in self.objects["actoren"]
            ]
            out["omvatteBijlagen"] = []
        elif resource == "betrokkenen":
            out["digitaleAdressen"] = [
                self._ref("digitaleadressen", d)
                for d in self.objects["digitaleadressen"].values()
                if (d.get("verstrektDoorBetrokkene") or {}).get("uuid") == item["uuid"]
            ]
            out["volledigeNaam"] = ""
        return out
