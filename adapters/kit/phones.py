"""Phone numbers to E.164 with `phonenumbers`, Dutch numbers by default: the core's (`router.core.phones`),
so that adapters, the agent API and the router store one form."""

from __future__ import annotations

from router.core.phones import MAX_INPUT, e164_or_as_is, to_e164

__all__ = ["MAX_INPUT", "e164_or_as_is", "to_e164"]
