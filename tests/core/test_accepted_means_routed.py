"""Accepted means routed (issue 12): a contact that an entry point accepts is never dead-lettered by the
router. Contacts are generated from the Contact JSON Schema (`from_json_schema` below), with the dates,
tenants and phone-note metadata that real input carries mixed in; whatever the edge accepts (the model,
a known tenant, `admission_problems`) must pass the router's own parse and routing decision.

Both run in this process: the routing decision is pure, so 10,000 contacts take seconds, not a broker.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from router.core.contact import KNOWN_CHANNELS, Contact, admission_problems
from router.core.ports import Delivery
from router.core.routing import parse, route
from router.core.tenants import load
from router.core.topology import Names

ROOT = Path(__file__).resolve().parents[2]
TENANTS = load(ROOT / "rules")
NAMES = Names("t.")
NOW = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
EXAMPLES = int(os.environ.get("ACCEPTED_EXAMPLES", "10000"))


def from_json_schema(schema: dict[str, Any], defs: dict[str, Any] | None = None) -> st.SearchStrategy[Any]:
    """Values for the JSON Schema subset pydantic writes for Contact: $ref, anyOf, const, enum, objects
    (properties, required, additionalProperties, maxProperties, propertyNames), arrays, strings
    (length, pattern, formats email and date-time), integers, booleans. (hypothesis-jsonschema would
    do this, but does not run on current Hypothesis.) Lengths are capped so examples stay small, and
    bounds are exceeded now and then: the edge must refuse those."""
    defs = schema.get("$defs", {}) if defs is None else defs
    if "$ref" in schema:
        return st.deferred(lambda: from_json_schema(defs[schema["$ref"].rsplit("/", 1)[-1]], defs))
    if "anyOf" in schema:
        return st.one_of([from_json_schema(s, defs) for s in schema["anyOf"]])
    if "const" in schema:
        return st.just(schema["const"])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if kind == "null":
        return st.none()
    if kind == "boolean":
        return st.booleans()
    if kind == "integer":
        return st.integers(min_value=schema.get("minimum", -(2**40)) - 1, max_value=2**40)
    if kind == "array":
        most = min(schema.get("maxItems", 3), 3)
        return st.lists(from_json_schema(schema["items"], defs), max_size=most)
    if kind == "object":
        return _object(schema, defs)
    return _string(schema)


def _string(schema: dict[str, Any]) -> st.SearchStrategy[str]:
    if schema.get("format") == "email":
        return st.one_of(st.emails(), st.text(max_size=30))
    if schema.get("format") == "date-time":
        return st.datetimes(timezones=st.just(UTC)).map(lambda d: d.isoformat())
    if "pattern" in schema:
        return st.from_regex(schema["pattern"], fullmatch=True).filter(lambda s: len(s) <= 200)
    longest = schema.get("maxLength", 200)
    short = st.text(min_size=schema.get("minLength", 0), max_size=min(longest, 40))
    # At the bound and one past it, now and then (Hypothesis tries the first option most).
    return st.one_of(short, st.sampled_from(["é" * longest, "é" * (longest + 1)]))


def _object(schema: dict[str, Any], defs: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    props = schema.get("properties", {})
    if props:
        required = set(schema.get("required", ()))
        return st.fixed_dictionaries(
            {k: from_json_schema(v, defs) for k, v in props.items() if k in required},
            optional={k: from_json_schema(v, defs) for k, v in props.items() if k not in required},
        )
    values = schema.get("additionalProperties", {})
    keys = st.text(max_size=schema.get("propertyNames", {}).get("maxLength", 100))
    return st.dictionaries(
        keys, from_json_schema(values, defs), max_size=min(schema.get("maxProperties", 5), 5)
    )


def contact_schema() -> dict[str, Any]:
    schema = Contact.model_json_schema(mode="validation")
    props = schema["properties"]
    props["tenant"] = {"enum": sorted(TENANTS)}
    props["channel"] = {"anyOf": [{"enum": list(KNOWN_CHANNELS)}, props["channel"]]}
    props.pop("id")  # derived; a wrong one is refused, which the model tests cover
    return schema


CONTACTS = from_json_schema(contact_schema())
TEAMS = sorted({t for tenant in TENANTS.values() for t in tenant.loaded.rules.team_ids()})
phone_metadata = st.fixed_dictionaries(
    {},
    optional={
        "phone.outcome": st.sampled_from(["answered", "transferred", "colleague_unavailable", "other"]),
        "phone.to_team": st.one_of(st.sampled_from(TEAMS), st.text(max_size=50)),
        "phone.agent": st.one_of(st.text(max_size=50), st.sampled_from(["a" * 500, "a" * 501, "a" * 2000])),
        "phone.note": st.text(max_size=2000),
        "phone.preferred_time": st.text(max_size=200),
        "thread.in_reply_to": st.text(max_size=300),
        "acknowledged_at": st.just(NOW.isoformat()),
    },
)
received = st.one_of(
    st.datetimes(
        min_value=datetime(1850, 1, 1),
        max_value=(NOW + timedelta(minutes=10)).replace(tzinfo=None),
        timezones=st.sampled_from([UTC, *(t.calendar.zone for t in TENANTS.values())]),
    ).map(lambda d: d.isoformat()),
    st.sampled_from(["0001-01-01T00:00:00+00:00", "9999-12-31T23:59:59+00:00", "2100-01-01T00:00:00Z"]),
)


@st.composite
def inputs(draw: st.DrawFn) -> dict[str, Any]:
    data: dict[str, Any] = draw(CONTACTS)
    data["received_at"] = draw(received)
    data["metadata"] = {**data.get("metadata", {}), **draw(phone_metadata)}
    if draw(st.integers(0, 2)) == 0:  # a third are phone notes whose outcome the router carries out
        data["channel"] = "phone"
        teams = TENANTS[data["tenant"]].loaded.rules.team_ids()
        data["metadata"]["phone.to_team"] = draw(st.sampled_from(teams))
        data["metadata"]["phone.outcome"] = draw(
            st.sampled_from(["answered", "transferred", "colleague_unavailable"])
        )
    return data


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=inputs())
def test_what_an_entry_point_accepts_the_router_routes(data: dict[str, Any]) -> None:
    try:
        contact = Contact.model_validate(data)
    except ValidationError:
        return  # refused at the edge with a 422: nothing was accepted
    if contact.tenant not in TENANTS or admission_problems(contact, NOW):
        return
    # What the shared publishing path sends, as the router receives it (a little later).
    body = contact.model_dump_json(exclude={"reference"}).encode()
    delivery = Delivery(body, None, f"{contact.tenant}.{contact.channel}", {}, False)
    later = NOW + timedelta(seconds=30)
    parsed = parse(delivery, TENANTS, later)
    assert isinstance(parsed, tuple), f"accepted, then dead-lettered: {parsed}"
    routed = route(parsed[0], parsed[1], NAMES, later, "token")
    assert routed.staged.cid == contact.cid and routed.messages


def test_the_dates_of_the_issue_are_refused_at_the_edge_not_after() -> None:
    base = {"tenant": "ommen", "channel": "mail", "source": {"adapter": "a", "native_id": "n"}}
    for when in ("0001-01-01T00:00:00Z", "9999-12-31T00:00:00Z", "1899-12-31T23:59:59Z"):
        try:
            Contact.model_validate({**base, "received_at": when})
        except ValidationError as exc:
            assert exc.errors()[0]["loc"] == ("received_at",)
        else:
            raise AssertionError(f"{when} was accepted")
    ahead = Contact.model_validate({**base, "received_at": "2100-01-01T00:00:00Z"})
    assert admission_problems(ahead, NOW) == [
        {"field": "received_at", "message": "is more than 5 minutes in the future"}
    ]
    long_agent = {**base, "received_at": NOW.isoformat(), "metadata": {"phone.agent": "x" * 600}}
    try:
        Contact.model_validate(long_agent)
    except ValidationError as exc:
        assert exc.errors()[0]["loc"] == ("metadata",)
    else:
        raise AssertionError("a 600-character phone.agent was accepted")
