"""Registration through entry points, `adapters list`, settings from the environment, wiring."""

from __future__ import annotations

import argparse
import json
import tomllib
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp import web
from pydantic import ValidationError

from adapters.kit import registry
from adapters.kit.context import MemoryDeadLetters
from adapters.kit.dutch import long_date, long_date_time
from adapters.kit.http import ADAPTERS, add_routes
from adapters.kit.ratelimit import MemoryRateLimiter
from adapters.kit.settings import AdapterSettings
from adapters.kit.wiring import stop_adapters
from router.cli import adapters as cli
from router.service import build, context_for_runtime
from router.settings import Settings
from tests.conftest import ROOT


def test_pyproject_registers_every_builtin_adapter_under_the_entry_point_group() -> None:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    declared = data["project"]["entry-points"][registry.GROUP]
    assert declared == registry.BUILTIN


def test_list_adapters_finds_all_five_with_their_channels() -> None:
    infos = {i.name: i for i in registry.list_adapters()}
    assert {n: i.channel for n, i in infos.items()}.items() >= {
        "mail": "mail",
        "webform": "webform",
        "social": "social",
        "phone": "phone",
        "counter": "counter",
    }.items()
    assert all(i.error is None for i in infos.values())


def _declare(monkeypatch: pytest.MonkeyPatch, *extra: registry.Registration) -> None:
    """The installed declarations and the built-ins, plus `extra` (as further distributions)."""
    found = registry._registrations() + list(extra)
    monkeypatch.setattr(registry, "_registrations", lambda: found)


def test_a_broken_adapter_is_listed_with_its_error_and_refused_at_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _declare(
        monkeypatch,
        registry.Registration("broken", "no_such_module:Adapter", "broken-dist"),
        registry.Registration("misnamed", "adapters.webform:WebformAdapter", "misnamed-dist"),
    )
    infos = {i.name: i for i in registry.list_adapters()}
    assert infos["broken"].error is not None and "cannot import" in infos["broken"].error
    assert infos["misnamed"].error is not None and "'webform', not 'misnamed'" in infos["misnamed"].error
    with pytest.raises(registry.AdapterLoadError, match="cannot import"):
        registry.load_adapters(["broken"])
    with pytest.raises(registry.AdapterLoadError, match="no adapter named 'fax'"):
        registry.load_adapters(["fax"])


def test_one_name_registered_by_two_distributions_is_an_error_naming_both(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _declare(monkeypatch, registry.Registration("counter", "my_package.counter:Counter", "my-package"))
    both = (
        "counter: registered twice, by contact-router (adapters.example:CounterVisitAdapter) "
        "and my-package (my_package.counter:Counter)"
    )
    with pytest.raises(registry.AdapterLoadError) as raised:
        registry.load_adapters(["webform", "counter"])
    assert str(raised.value).startswith(both)
    # Reported, not raised, by `adapters list`, which then exits 1; the other adapters still load.
    infos = {i.name: i for i in registry.list_adapters()}
    assert infos["counter"].error is not None and infos["counter"].error.startswith(both)
    assert infos["counter"].source == "contact-router, my-package"
    assert [n for n, i in infos.items() if i.error] == ["counter"]
    assert sorted(registry.load_adapters(["mail", "webform", "social", "phone"])) == [
        "mail",
        "phone",
        "social",
        "webform",
    ]
    args = argparse.Namespace(json=False)
    assert cli.cmd_list(args) == 1
    assert f"counter    BROKEN    {both}" in capsys.readouterr().out


def test_three_registrations_and_a_clash_with_the_built_in_fallback_name_them_all(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # No metadata of this project (a source tree without `pip install -e`): the built-ins are the
    # fallback, and another distribution's "mail" clashes with the built-in one.
    monkeypatch.setattr(registry, "entry_points", lambda group: [])
    _declare(
        monkeypatch,
        registry.Registration("mail", "one.mail:Mail", "one"),
        registry.Registration("mail", "two.mail:Mail", "two"),
    )
    with pytest.raises(registry.AdapterLoadError) as raised:
        registry.load_adapters(["mail"])
    assert str(raised.value).startswith(
        "mail: registered 3 times, by built-in (adapters.mail:MailAdapter), one (one.mail:Mail) "
        "and two (two.mail:Mail)"
    )


def test_the_same_adapter_registered_twice_is_no_conflict(monkeypatch: pytest.MonkeyPatch) -> None:
    # This project installed (its metadata) plus the built-in fallback: one target, declared twice;
    # and a second distribution naming the very same class.
    assert [r.source for r in registry._registrations() if r.name == "mail"] == ["contact-router", "built-in"]
    _declare(monkeypatch, registry.Registration("mail", "adapters.mail:MailAdapter", "a-repackaging"))
    infos = {i.name: i for i in registry.list_adapters()}
    assert infos["mail"].error is None and infos["mail"].source == "contact-router"
    assert type(registry.load_adapters(["mail"])["mail"]).__name__ == "MailAdapter"


def test_cli_adapters_list(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADAPTERS_ENABLED", "mail,webform")
    parser = argparse.ArgumentParser(prog="contact-router")
    cli.add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["adapters", "list"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "mail       enabled" in out and "counter    -" in out
    args = parser.parse_args(["adapters", "list", "--json"])
    assert args.func(args) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["webform"]["enabled"] is True and rows["phone"]["enabled"] is False


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "MAIL_ROUTES", "@coevorden.nl:coevorden, facturen@ommen.nl:ommen:facturen,Info@Ommen.nl:ommen"
    )
    monkeypatch.setenv("SOCIAL_ACCOUNTS", "123:ommen,456:coevorden")
    monkeypatch.setenv("ACK_FROM", "ommen:noreply@ommen.nl")
    monkeypatch.setenv("SMTP_PORT", "2525")
    monkeypatch.setenv("TENANT_FORM_URL", "ommen:https://www.ommen.nl/contact")
    s = AdapterSettings()
    assert s.smtp_port == 2525
    route = s.route_for("FACTUREN@ommen.nl")
    assert route is not None and (route.tenant, route.mailbox) == ("ommen", "facturen")
    route = s.route_for("info@ommen.nl")
    assert route is not None and (route.tenant, route.mailbox) == ("ommen", None)
    route = s.route_for("j.jansen@coevorden.nl")
    assert route is not None and route.tenant == "coevorden"
    assert s.route_for("info@zwolle.nl") is None
    assert s.accounts == {"123": "ommen", "456": "coevorden"}
    assert s.ack_senders == {"ommen": "noreply@ommen.nl"}
    assert s.form_urls == {"ommen": "https://www.ommen.nl/contact"}
    assert s.phones["ommen"] == "14 0529"


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("MAIL_ROUTES", "info@ommen.nl", "MAIL_ROUTES: cannot read 'info@ommen.nl'"),
        ("MAIL_ROUTES", "ommen.nl:ommen", "neither an address nor '@domain'"),
        ("SOCIAL_ACCOUNTS", "123", "SOCIAL_ACCOUNTS: cannot read"),
        ("TENANT_FORM_URL", "https", "TENANT_FORM_URL: cannot read"),
    ],
)
def test_bad_settings_fail_at_start_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match=message):
        AdapterSettings()


def test_dutch_dates_follow_amsterdam_time_across_dst() -> None:
    assert long_date(datetime(2026, 5, 21, 15, 0, tzinfo=UTC)) == "donderdag 21 mei 2026"
    assert long_date(datetime(2026, 10, 25, 23, 30, tzinfo=UTC)) == "maandag 26 oktober 2026"
    assert long_date_time(datetime(2026, 3, 29, 11, 5, tzinfo=UTC)) == "zondag 29 maart 2026 om 13.05 uur"


async def test_embedded_runtime_gets_in_memory_helpers_and_routes(settings: Settings) -> None:
    runtime = await build(settings, with_router=False, embedded="always")
    ctx = await context_for_runtime(runtime, AdapterSettings(adapters_enabled="webform,social,phone"))
    try:
        assert isinstance(ctx.dead_letters, MemoryDeadLetters)
        assert isinstance(ctx.rate_limiter, MemoryRateLimiter)
        assert ctx.acks is None  # no ACK_FROM: no acknowledgements
        app = web.Application()
        with pytest.raises(RuntimeError, match="before add_routes"):
            add_routes(app)
        app[ADAPTERS] = ctx
        add_routes(app)
        paths = sorted({r.resource.canonical for r in app.router.routes() if r.resource is not None})
        assert paths == [
            "/v1/channels/phone/{tenant}/notes",
            "/v1/channels/social/{tenant}/webhook",
            "/v1/channels/webform/{tenant}",
        ]
    finally:
        await stop_adapters(ctx, within=1)
        await runtime.close()


async def test_a_real_runtime_gets_the_broker_and_redis_helpers(
    settings: Settings, amqp: Any, redis_client: Any
) -> None:
    from router.amqp.publisher import AmqpContactPublisher
    from router.metrics.counting import CountingPublisherAndSink
    from router.redis.keys import Keys
    from router.redis.ratelimit import RedisRateLimiter

    runtime = await build(settings, with_router=False, embedded="never")
    ctx = await context_for_runtime(runtime, AdapterSettings(ack_from="ommen:noreply@ommen.nl"))
    try:
        # Dead letters go to the broker, counted on their way (router/metrics/counting.py).
        assert isinstance(ctx.dead_letters, CountingPublisherAndSink)
        assert isinstance(ctx.dead_letters.inner, AmqpContactPublisher)
        assert isinstance(ctx.rate_limiter, RedisRateLimiter)
        assert ctx.acks is not None
        assert (await ctx.rate_limiter.take("k")).allowed
        # The bucket's key names the client only by a keyed hash.
        assert await redis_client.exists(Keys(settings.namespace).rate_bucket("k")) == 1
        assert [k async for k in redis_client.scan_iter(match=f"{settings.namespace}webform:rate:k")] == []
        assert sorted(ctx.adapters) == ["mail", "phone", "social", "webform"]
    finally:
        await stop_adapters(ctx, within=1)
        await runtime.close()
