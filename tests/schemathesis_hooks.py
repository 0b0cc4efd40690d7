"""What a schema cannot say, told to schemathesis (SCHEMATHESIS_HOOKS=tests.schemathesis_hooks): how to
make values the service accepts for the formats it names. Only valid values are generated here; the
negative phases still send every kind of wrong type and shape.

- `date-time`: moments from 1900 up to yesterday. The service refuses a contact received more than
  minutes in the future (422, named in the document's descriptions): a bound relative to "now" that no
  JSON Schema keyword can carry. A stateful step may still fill `received_at` or `called_at` with a
  moment an answer gave (a deadline, in the future): `before_call` moves such a moment to yesterday.
- `phone`: numbers libphonenumber accepts (the service normalises them to E.164 and refuses the rest).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import schemathesis
from hypothesis import strategies as st

_MOMENTS = st.datetimes(
    min_value=datetime(1900, 1, 2),
    max_value=datetime.now() - timedelta(days=1),
    timezones=st.just(UTC),
).map(lambda moment: moment.isoformat())

_PHONES = st.sampled_from(
    ["06 12345678", "+31612345678", "0529-123456", "+31 20 123 4567", "(020) 123 45 67", "0524 123456"]
)

schemathesis.openapi.format("date-time", _MOMENTS)
schemathesis.openapi.format("phone", _PHONES)


_MOMENT_FIELDS = {"/v1/contacts": "received_at", "/v1/channels/phone/{tenant}/notes": "called_at"}


@schemathesis.hook
def before_call(ctx: object, case: object, **kwargs: object) -> None:
    """A schema-valid moment in the future becomes yesterday (see the module's docstring)."""
    field = _MOMENT_FIELDS.get(getattr(getattr(case, "operation", None), "path", ""))
    body = getattr(case, "body", None)
    if field is None or not isinstance(body, dict) or not isinstance(body.get(field), str):
        return
    try:
        moment = datetime.fromisoformat(body[field])
    except ValueError:
        return  # not a date-time: a negative case, left as it is
    if moment.tzinfo is not None and moment > datetime.now(UTC):
        body[field] = (datetime.now(UTC) - timedelta(days=1)).isoformat()
