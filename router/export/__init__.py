"""Outbound exports of what the service routed to the systems a municipality already uses; each its
own process, a consumer of exchange `events` with its own queue (docs/architecture.md)."""
