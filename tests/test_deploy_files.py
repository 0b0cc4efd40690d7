"""docker-compose.yml and the Dockerfile (issue 14, item 7), checked without Docker.

Docker is not installed where the suite runs, so `docker compose config` cannot be run. Nearest
thing: the compose file is parsed with PyYAML and its variables are interpolated the way compose does
(`${VAR:?message}` fails when VAR is unset, `$$` is a literal `$`), and the result is checked: no port
of Redis or RabbitMQ is published, both are on an internal network only, their passwords come from the
environment, Redis keeps an AOF, every service has a healthcheck. The Dockerfile's HEALTHCHECK command
is run against a local HTTP server.
"""

from __future__ import annotations

import http.server
import re
import shlex
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
ENV = {
    "RABBITMQ_PASSWORD": "rabbit0secret",
    "REDIS_PASSWORD": "redis0secret",
    "POSTGRES_PASSWORD": "pg0secret",
    "API_KEYS": "i:k",
    "KEY_SECRET": "key0secret",
}
BACKING = ("rabbitmq", "redis")
_VAR = re.compile(r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::\?(?P<message>[^}]*))?\}")


class MissingVariable(Exception):
    pass


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's interpolation, for the forms this file uses: `$$`, `${VAR}`, `${VAR:?message}`."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def one(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group("name")
        if name in env and (env[name] or m.group("message") is None):
            return env[name]
        if m.group("message") is not None:
            raise MissingVariable(f"{name}: {m.group('message')}")
        return ""

    return _VAR.sub(one, value)


def raw() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    return data


@pytest.fixture
def config() -> dict[str, Any]:
    """What `docker compose config` would give with the three variables set."""
    data: dict[str, Any] = interpolate(raw(), ENV)
    return data


def test_no_port_of_redis_or_rabbitmq_is_published(config: dict[str, Any]) -> None:
    services = config["services"]
    for name in BACKING:
        assert "ports" not in services[name], name
    # Only the service's HTTP port is published.
    published = {name: s.get("ports") for name, s in services.items() if s.get("ports")}
    assert published == {"contact-router": ["8080:8080"]}


def test_redis_and_rabbitmq_are_on_an_internal_network_only(config: dict[str, Any]) -> None:
    networks = config["networks"]
    for name in BACKING:
        attached = config["services"][name]["networks"]
        assert attached == ["backend"], name
    assert networks["backend"]["internal"] is True
    assert set(config["services"]["contact-router"]["networks"]) == {"backend", "frontend"}


def test_every_service_has_a_healthcheck(config: dict[str, Any]) -> None:
    for name, service in config["services"].items():
        check = service.get("healthcheck")
        assert check and check.get("test") and not check.get("disable"), name
    assert "healthz" in " ".join(config["services"]["contact-router"]["healthcheck"]["test"])
    for name in BACKING:
        assert config["services"]["contact-router"]["depends_on"][name] == {"condition": "service_healthy"}


def test_passwords_come_from_the_environment_and_are_required() -> None:
    services = raw()["services"]
    required = re.compile(r"^\$\{(RABBITMQ|REDIS)_PASSWORD:\?[^}]+\}$")
    assert required.match(services["rabbitmq"]["environment"]["RABBITMQ_DEFAULT_PASS"])
    assert required.match(services["redis"]["environment"]["REDIS_PASSWORD"])
    env = services["contact-router"]["environment"]
    assert "${RABBITMQ_PASSWORD:?" in env["AMQP_URL"] and "${REDIS_PASSWORD:?" in env["REDIS_URL"]
    assert "guest" not in COMPOSE.read_text(encoding="utf-8")
    # Like `docker compose config`: an unset password stops it, naming the variable.
    for name in ("RABBITMQ_PASSWORD", "REDIS_PASSWORD", "KEY_SECRET"):
        with pytest.raises(MissingVariable, match=name):
            interpolate(raw(), {k: v for k, v in ENV.items() if k != name})


def test_the_service_connects_with_the_passwords(config: dict[str, Any]) -> None:
    env = config["services"]["contact-router"]["environment"]
    assert env["AMQP_URL"] == "amqp://contact-router:rabbit0secret@rabbitmq:5672/"
    assert env["REDIS_URL"] == "redis://:redis0secret@redis:6379/0"
    assert config["services"]["rabbitmq"]["environment"]["RABBITMQ_DEFAULT_USER"] == "contact-router"
    assert env["HTTP_HOST"] == "0.0.0.0"
    # Keyed hashes with the deployment's own secret; erasure and purge reach the history.
    assert env["KEY_SECRET"] == "key0secret"
    assert env["HISTORY_URL"] == config["services"]["history"]["environment"]["HISTORY_URL"]


def test_redis_runs_with_aof_and_a_password(config: dict[str, Any]) -> None:
    command = config["services"]["redis"]["command"]
    assert command[:2] == ["sh", "-c"]
    argv = shlex.split(command[2])
    assert argv[:2] == ["exec", "redis-server"]
    assert argv[argv.index("--appendonly") + 1] == "yes"
    # The shell reads the password from the container's environment; it is in no file.
    assert argv[argv.index("--requirepass") + 1] == "$REDIS_PASSWORD"
    assert "REDISCLI_AUTH" in " ".join(config["services"]["redis"]["healthcheck"]["test"])


# --- Dockerfile ------------------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text(encoding="utf-8").replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def healthcheck_command() -> str:
    [check] = [rest for keyword, rest in dockerfile_instructions() if keyword == "HEALTHCHECK"]
    assert "--interval=" in check and " CMD " in f" {check} "
    return check.split(" CMD ", 1)[1]


def test_the_image_listens_on_all_interfaces_and_has_a_healthcheck() -> None:
    env = " ".join(rest for keyword, rest in dockerfile_instructions() if keyword == "ENV")
    assert "HTTP_HOST=0.0.0.0" in env.split()
    assert "/healthz" in healthcheck_command()


@pytest.fixture
def healthz_server() -> Iterator[int]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/healthz" else 404)
            self.end_headers()
            self.wfile.write(b'{"status": "ok"}')

        def log_message(self, *args: Any) -> None:
            return None

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()


def closed_port() -> int:
    """A port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def test_the_healthcheck_passes_on_a_healthy_service_and_fails_otherwise(healthz_server: int) -> None:
    # The image's `python`, here the interpreter running the tests.
    command = healthcheck_command()
    assert command.startswith("python ")
    command = shlex.quote(sys.executable) + command.removeprefix("python")

    def run(port: int) -> int:
        return subprocess.run(
            ["sh", "-c", command], env={"HTTP_PORT": str(port)}, capture_output=True, timeout=30
        ).returncode

    assert run(healthz_server) == 0
    assert run(closed_port()) != 0
