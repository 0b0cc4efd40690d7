"""Adapters are found through entry points (group `contact_router.adapters`), so a package of an
integrator adds a channel by declaring one in its own pyproject.toml — no change to this project:

    [project.entry-points."contact_router.adapters"]
    counter = "my_package.counter:CounterVisitAdapter"

The entry point's name must equal the adapter's `name`. Two declarations of one name that load
different classes are an error naming both (which adapter would run would depend on the order of the
installed packages); the same `module:Class` declared twice is the same adapter.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points

from adapters.kit.base import ChannelAdapter

GROUP = "contact_router.adapters"

# Used when the package metadata is missing (running from a source tree without `pip install -e`);
# with the metadata present they are the same declarations again.
BUILTIN = {
    "mail": "adapters.mail:MailAdapter",
    "webform": "adapters.webform:WebformAdapter",
    "social": "adapters.social:SocialAdapter",
    "phone": "adapters.phone:PhoneNotesAdapter",
    "counter": "adapters.example:CounterVisitAdapter",
}
BUILTIN_SOURCE = "built-in"


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


@dataclass(frozen=True)
class Registration:
    """One declaration of an adapter: its name, `module:Class`, and who declares it."""

    name: str
    target: str
    source: str  # the distribution's name, or "built-in"


def _registrations() -> list[Registration]:
    """Every declaration: those of the installed distributions, then the built-in fallback."""
    found = [
        Registration(ep.name, ep.value, ep.dist.name if ep.dist is not None else "unknown distribution")
        for ep in entry_points(group=GROUP)
    ]
    return found + [Registration(name, target, BUILTIN_SOURCE) for name, target in BUILTIN.items()]


def _by_name() -> dict[str, list[Registration]]:
    """The declarations of each name, one per target: a target declared again adds nothing."""
    out: dict[str, list[Registration]] = {}
    for reg in _registrations():
        regs = out.setdefault(reg.name, [])
        if all(r.target != reg.target for r in regs):
            regs.append(reg)
    return out


def _conflict(name: str, regs: Sequence[Registration]) -> AdapterLoadError:
    times = "twice" if len(regs) == 2 else f"{len(regs)} times"
    each = [f"{r.source} ({r.target})" for r in regs]
    return AdapterLoadError(
        f"{name}: registered {times}, by {', '.join(each[:-1])} and {each[-1]}; "
        "uninstall one of them or give one adapter another name"
    )


def _load(reg: Registration) -> type[ChannelAdapter]:
    try:
        cls = EntryPoint(reg.name, reg.target, GROUP).load()
    except Exception as exc:
        raise AdapterLoadError(
            f"{reg.name}: cannot import {reg.target}: {type(exc).__name__}: {exc}"
        ) from exc
    if not (isinstance(cls, type) and issubclass(cls, ChannelAdapter)):
        raise AdapterLoadError(f"{reg.name}: {reg.target} is not a ChannelAdapter subclass")
    if getattr(cls, "name", None) != reg.name:
        raise AdapterLoadError(
            f"{reg.name}: the adapter's name is {getattr(cls, 'name', None)!r}, not {reg.name!r}"
        )
    return cls


def list_adapters() -> list[AdapterInfo]:
    """Every registered adapter; one that fails to load, or whose name is taken twice, is listed with
    the error, not raised."""
    out = []
    for name, regs in sorted(_by_name().items()):
        if len(regs) > 1:
            targets, sources = " | ".join(r.target for r in regs), ", ".join(r.source for r in regs)
            out.append(AdapterInfo(name, targets, sources, error=str(_conflict(name, regs))))
            continue
        reg = regs[0]
        try:
            cls = _load(reg)
        except AdapterLoadError as exc:
            out.append(AdapterInfo(name, reg.target, reg.source, error=str(exc)))
            continue
        out.append(AdapterInfo(name, reg.target, reg.source, cls.channel, cls.summary))
    return out


def load_adapters(names: Iterable[str]) -> dict[str, ChannelAdapter]:
    """Instances of the named adapters; an unknown, broken or doubly registered one fails start-up
    with the reason."""
    known = _by_name()
    out: dict[str, ChannelAdapter] = {}
    for name in names:
        regs = known.get(name)
        if not regs:
            raise AdapterLoadError(
                f"ADAPTERS_ENABLED: no adapter named {name!r} (known: {', '.join(sorted(known))})"
            )
        if len(regs) > 1:
            raise _conflict(name, regs)
        out[name] = _load(regs[0])()
    return out
