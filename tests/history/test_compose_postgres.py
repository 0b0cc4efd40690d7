"""docker-compose.yml's PostgreSQL and history services, checked as tests/test_deploy_files.py checks the
rest (without Docker): internal network only, no published port, the password from the environment and
required, healthchecks, and the history's URL built from the same password."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.test_deploy_files import ENV, MissingVariable, interpolate, raw


@pytest.fixture
def config() -> dict[str, Any]:
    data: dict[str, Any] = interpolate(raw(), ENV)
    return data


def test_postgres_is_internal_has_a_volume_and_a_healthcheck(config: dict[str, Any]) -> None:
    pg = config["services"]["postgres"]
    assert "ports" not in pg and pg["networks"] == ["backend"]
    assert config["networks"]["backend"]["internal"] is True
    assert "pg_isready" in pg["healthcheck"]["test"]
    assert (
        pg["volumes"] == ["postgres-data:/var/lib/postgresql/data"] and "postgres-data" in config["volumes"]
    )


def test_the_postgres_password_comes_from_the_environment_and_is_required() -> None:
    services = raw()["services"]
    assert re.match(
        r"^\$\{POSTGRES_PASSWORD:\?[^}]+\}$", services["postgres"]["environment"]["POSTGRES_PASSWORD"]
    )
    with pytest.raises(MissingVariable, match="POSTGRES_PASSWORD"):
        interpolate(raw(), {k: v for k, v in ENV.items() if k != "POSTGRES_PASSWORD"})


def test_the_history_consumer_runs_on_its_own_and_reaches_postgres_with_the_password(
    config: dict[str, Any],
) -> None:
    history = config["services"]["history"]
    assert history["command"] == ["contact-router", "history", "consume"]
    assert history["environment"]["HISTORY_URL"] == (
        "postgresql://contact-router:pg0secret@postgres:5432/contact_router"
    )
    assert history["networks"] == ["backend"] and "ports" not in history
    assert history["healthcheck"]["test"] == ["CMD", "contact-router", "history", "check"]
    assert history["depends_on"] == {
        "rabbitmq": {"condition": "service_healthy"},
        "postgres": {"condition": "service_healthy"},
    }
    pg = config["services"]["postgres"]["environment"]
    assert (pg["POSTGRES_USER"], pg["POSTGRES_DB"]) == ("contact-router", "contact_router")
