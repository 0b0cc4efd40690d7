"""Adapters are found through entry points (group `contact_router.adapters`), so a package of an
integrator adds a channel by declaring one in its own pyproject.toml — no change to this project:

    [project.entry-points."contact_router.adapters"]
    counter = "my_package.counter:CounterVisitAdapter"

The entry point's name must equal the adapter's `name`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points

from adapters.kit.base import ChannelAdapter

GROUP = "contact_router.adapters"

# Used only when the package metadata is missing (running from a source tree without `pip install -e`).
BUILTIN = {
    "mail": "adapters.mail:MailAdapter",
    "webform": "adapters.webform:WebformAdapter",
    "social": "adapters.social:SocialAdapter",
    "phone": "adapters.phone:PhoneNotesAdapter",
    "counter": "adapters.example:CounterVisitAdapter",
}


class AdapterLoadError(Exception):
    pass


@dataclass(frozen=True)
class AdapterInfo:
    name: str
    target: str  # "module:Class"
    source: str  # the distribution that declares it, or "built-in"
    channel: str | None = None
    summary: str = ""
    error: str | None = None


def _entry_points() -> dict[str, EntryPoint]:
    found = {ep.name: ep for ep in entry_points(group=GROUP)}
    for name, target in BUILTIN.items():
        found.setdefault(name, EntryPoint(name, target, GROUP))
    return found


def _load(ep: EntryPoint) -> type[ChannelAdapter]:
    try:
        cls = ep.load()
    except Exception as exc:
        raise AdapterLoadError(f"{ep.name}: cannot import {ep.value}: {type(exc).__name__}: {exc}") from exc
    if not (isinstance(cls, type) and issubclass(cls, ChannelAdapter)):
        raise AdapterLoadError(f"{ep.name}: {ep.value} is not a ChannelAdapter subclass")
    if getattr(cls, "name", None) != ep.name:
        raise AdapterLoadError(
            f"{ep.name}: the adapter's name is {getattr(cls, 'name', None)!r}, not {ep.name!r}"
        )
    return cls


def list_adapters() -> list[AdapterInfo]:
    """Every registered adapter; one that fails to load is listed with the error, not raised."""
    out = []
    for name, ep in sorted(_entry_points().items()):
        source = ep.dist.name if ep.dist is not None else "built-in"
        try:
            cls = _load(ep)
        except AdapterLoadError as exc:
            out.append(AdapterInfo(name, ep.value, source, error=str(exc)))
            continue
        out.append(AdapterInfo(name, ep.value, source, cls.channel, cls.summary))
    return out


def load_adapters(names: Iterable[str]) -> dict[str, ChannelAdapter]:
    """Instances of the named adapters; an unknown or broken one fails start-up with the reason."""
    eps = _entry_points()
    out: dict[str, ChannelAdapter] = {}
    for name in names:
        if name not in eps:
            raise AdapterLoadError(
                f"ADAPTERS_ENABLED: no adapter named {name!r} (known: {', '.join(sorted(eps))})"
            )
        out[name] = _load(eps[name])()
    return out
