"""What may leave the record when the sender chose it: ids that are ours to show, and nothing else.

Logs, dead-letter reasons, `dlq list` and events carry ids and field names, never input (README,
"Privacy"). An AMQP message id is chosen by whoever published the message: this service and the kit
set UUIDs, but a system of an integrator's may send its own case number, or an address. Shown as it is
only when it is a UUID; otherwise logs leave it out and `dlq list` names the dead letter by a digest
of its body, as it does a message without an id.
"""

from __future__ import annotations

import hashlib
import re

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def plain_id(value: str | None) -> str | None:
    """`value` when it is a UUID (safe to log and print), else None."""
    return value if value is not None and _UUID.fullmatch(value) else None


def dead_letter_id(message_id: str | None, body: bytes) -> str:
    """How `dlq list`, `dlq show` and `dlq replay` name a dead letter: its message id when that is a
    UUID, otherwise `sha-` and the start of its body's SHA-256."""
    return plain_id(message_id) or "sha-" + hashlib.sha256(body).hexdigest()[:16]
