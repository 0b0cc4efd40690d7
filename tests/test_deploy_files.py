"""docker-compose.yml, docker-compose.cluster.yml and the Dockerfile (issue 14, item 7; issue 21,
item 5), checked without Docker.

Docker is not installed where the suite runs, so `docker compose config` cannot be run. Nearest
thing: each compose file is parsed with PyYAML (anchors and merge keys as compose reads them) and its
variables are interpolated the way compose does (`${VAR:?message}` fails when VAR is unset, `$$` is a
literal `$`), and the result is checked, for both files: no port of RabbitMQ, Redis or PostgreSQL is
published, they are on an internal network only, the passwords come from the environment, Redis keeps
an AOF, every service has a healthcheck, RabbitMQ is the version the suite runs against, each command
is one of the CLI's. For the cluster file also: three broker nodes with one cookie, listed in every
AMQP_URL, two routers, the metrics healthchecks run against a local /metrics. The Dockerfile's
HEALTHCHECK command is run against a local HTTP server.
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from router import cli
from router.broker_url import amqp_addresses
from router.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
RABBITMQ_CONF = ROOT / "deploy" / "rabbitmq" / "rabbitmq.conf"
# The RabbitMQ the suite runs against (scripts/test starts the machine's, Debian's 3.10), stated in the
# README; both compose files run it.
SUITE_RABBITMQ = "3.10"
ENV = {
    "RABBITMQ_PASSWORD": "rabbit0secret",
    "RABBITMQ_ERLANG_COOKIE": "cookie0secret",
    "REDIS_PASSWORD": "redis0secret",
    "POSTGRES_PASSWORD": "pg0secret",
    "API_KEYS": "i:k",
    "KEY_SECRET": "key0secret",
}
_VAR = re.compile(r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:\?|:-)(?P<arg>[^}]*))?\}")


@dataclass(frozen=True)
class Compose:
    """A compose file and the names of its parts."""

    name: str
    brokers: tuple[str, ...]  # the RabbitMQ services, in AMQP_URL's order
    api: str  # the service with the HTTP API: the one published port
    required: tuple[str, ...]  # variables without which compose refuses to start

    @property
    def path(self) -> Path:
        return ROOT / self.name

    @property
    def backing(self) -> tuple[str, ...]:
        return (*self.brokers, "redis", "postgres")


SINGLE = Compose(
    "docker-compose.yml",
    brokers=("rabbitmq",),
    api="contact-router",
    required=("RABBITMQ_PASSWORD", "REDIS_PASSWORD", "POSTGRES_PASSWORD", "API_KEYS", "KEY_SECRET"),
)
CLUSTER = Compose(
    "docker-compose.cluster.yml",
    brokers=("rabbitmq-1", "rabbitmq-2", "rabbitmq-3"),
    api="api",
    required=(*SINGLE.required, "RABBITMQ_ERLANG_COOKIE"),
)
FILES = [pytest.param(SINGLE, id=SINGLE.name), pytest.param(CLUSTER, id=CLUSTER.name)]


class MissingVariable(Exception):
    pass


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's interpolation, for the forms these files use: `$$`, `${VAR}`, `${VAR:?message}`,
    `${VAR:-default}`."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def one(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name, op = m.group("name"), m.group("op")
        if env.get(name) or (name in env and op is None):
            return env[name]
        if op == ":?":
            raise MissingVariable(f"{name}: {m.group('arg')}")
        return m.group("arg") if op == ":-" else ""

    return _VAR.sub(one, value)


def raw(compose: Compose = SINGLE) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(compose.path.read_text(encoding="utf-8"))
    return data


@pytest.fixture(params=FILES)
def compose(request: pytest.FixtureRequest) -> Compose:
    file: Compose = request.param
    return file


@pytest.fixture
def config(compose: Compose) -> dict[str, Any]:
    """What `docker compose config` would give with the variables set (profiles aside: every service)."""
    data: dict[str, Any] = interpolate(raw(compose), ENV)
    return data


def test_no_port_of_a_backing_service_is_published(compose: Compose, config: dict[str, Any]) -> None:
    services = config["services"]
    for name in compose.backing:
        assert "ports" not in services[name], name
    # Only the API's HTTP port is published.
    published = {name: s.get("ports") for name, s in services.items() if s.get("ports")}
    assert published == {compose.api: ["8080:8080"]}


def test_backing_services_are_on_an_internal_network_only(compose: Compose, config: dict[str, Any]) -> None:
    networks = config["networks"]
    for name in compose.backing:
        attached = config["services"][name]["networks"]
        assert attached == ["backend"], name
    assert networks["backend"]["internal"] is True
    assert set(config["services"][compose.api]["networks"]) == {"backend", "frontend"}
    # Only what needs a way out (the API; the Open Klant export) is on another network than `backend`.
    for name, service in config["services"].items():
        assert set(service["networks"]) <= {"backend", "frontend"}, name
        if name not in (compose.api, "openklant"):
            assert service["networks"] == ["backend"], name


def test_every_service_has_a_healthcheck(compose: Compose, config: dict[str, Any]) -> None:
    for name, service in config["services"].items():
        check = service.get("healthcheck")
        assert check and check.get("test") and not check.get("disable"), name
    api = config["services"][compose.api]
    assert "healthz" in " ".join(api["healthcheck"]["test"])
    for name in (*compose.brokers, "redis"):
        assert api["depends_on"][name] == {"condition": "service_healthy"}
    # Whatever waits for another service waits for it to be healthy, not merely started.
    for name, service in config["services"].items():
        for other, condition in service.get("depends_on", {}).items():
            assert other in config["services"], (name, other)
            assert condition == {"condition": "service_healthy"}, (name, other)


def test_passwords_come_from_the_environment_and_are_required(compose: Compose) -> None:
    services = raw(compose)["services"]
    required = re.compile(r"^\$\{(RABBITMQ|REDIS)_PASSWORD:\?[^}]+\}$")
    for name in compose.brokers:
        assert required.match(services[name]["environment"]["RABBITMQ_DEFAULT_PASS"]), name
    assert required.match(services["redis"]["environment"]["REDIS_PASSWORD"])
    env = services[compose.api]["environment"]
    assert "${RABBITMQ_PASSWORD:?" in env["AMQP_URL"] and "${REDIS_PASSWORD:?" in env["REDIS_URL"]
    text = compose.path.read_text(encoding="utf-8")
    assert "guest" not in text
    # Every secret is a variable: no value of one is written in the file.
    for service in services.values():
        for key, value in service.get("environment", {}).items():
            if re.search(r"PASS|SECRET|COOKIE|TOKEN|KEYS", key):
                assert str(value).startswith("${"), key
    # Like `docker compose config`: an unset secret stops it, naming the variable.
    for name in compose.required:
        with pytest.raises(MissingVariable, match=name):
            interpolate(raw(compose), {k: v for k, v in ENV.items() if k != name})


def amqp_urls(config: dict[str, Any]) -> dict[str, str]:
    return {
        name: service["environment"]["AMQP_URL"]
        for name, service in config["services"].items()
        if "AMQP_URL" in service.get("environment", {})
    }


def test_the_service_connects_with_the_passwords(compose: Compose, config: dict[str, Any]) -> None:
    env = config["services"][compose.api]["environment"]
    nodes = ",".join(f"{name}:5672" for name in compose.brokers)
    # Every process has the same AMQP_URL, naming every node of the broker.
    urls = amqp_urls(config)
    assert set(urls.values()) == {f"amqp://contact-router:rabbit0secret@{nodes}/"}, urls
    assert env["REDIS_URL"] == "redis://:redis0secret@redis:6379/0"
    for name in compose.brokers:
        assert config["services"][name]["environment"]["RABBITMQ_DEFAULT_USER"] == "contact-router"
    assert env["HTTP_HOST"] == "0.0.0.0"
    # Keyed hashes with the deployment's own secret; erasure and purge reach the history.
    assert env["KEY_SECRET"] == "key0secret"
    assert env["HISTORY_URL"] == config["services"]["history"]["environment"]["HISTORY_URL"]
    # And the settings take it as it is.
    assert Settings(amqp_url=env["AMQP_URL"]).amqp_url == env["AMQP_URL"]


def test_redis_runs_with_aof_and_a_password(config: dict[str, Any]) -> None:
    command = config["services"]["redis"]["command"]
    assert command[:2] == ["sh", "-c"]
    argv = shlex.split(command[2])
    assert argv[:2] == ["exec", "redis-server"]
    assert argv[argv.index("--appendonly") + 1] == "yes"
    assert argv[argv.index("--appendfsync") + 1] == "everysec"
    # The shell reads the password from the container's environment; it is in no file.
    assert argv[argv.index("--requirepass") + 1] == "$REDIS_PASSWORD"
    assert "REDISCLI_AUTH" in " ".join(config["services"]["redis"]["healthcheck"]["test"])
    assert config["services"]["redis"]["image"].startswith("redis:7")


def test_rabbitmq_is_the_version_the_suite_runs_against(compose: Compose, config: dict[str, Any]) -> None:
    for name in compose.brokers:
        assert config["services"][name]["image"] == f"rabbitmq:{SUITE_RABBITMQ}-management", name
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert f"RabbitMQ {SUITE_RABBITMQ}" in readme and compose.name in readme


def test_the_commands_are_those_of_the_cli(config: dict[str, Any]) -> None:
    """Each process's command, and each healthcheck that is one, parses with `contact-router`'s own
    parser: no service runs a command that does not exist."""
    commands = []
    for name, service in config["services"].items():
        for argv in (service.get("command"), service["healthcheck"]["test"][1:]):
            if argv and argv[0] == "contact-router":
                commands.append((name, argv[1:]))
    assert commands
    for name, argv in commands:
        try:
            cli.parser().parse_args(argv)
        except SystemExit as exc:  # argparse's way of refusing
            raise AssertionError(f"{name}: contact-router {' '.join(argv)}") from exc


# --- docker-compose.cluster.yml: three broker nodes, two routers, every process apart ---------------


@pytest.fixture
def cluster() -> dict[str, Any]:
    data: dict[str, Any] = interpolate(raw(CLUSTER), ENV)
    return data


def rabbitmq_conf() -> dict[str, str]:
    out = {}
    for line in RABBITMQ_CONF.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


def test_three_broker_nodes_form_one_cluster_with_one_cookie(cluster: dict[str, Any]) -> None:
    services = raw(CLUSTER)["services"]
    cookies = {services[name]["environment"]["RABBITMQ_ERLANG_COOKIE"] for name in CLUSTER.brokers}
    assert len(cookies) == 1 and next(iter(cookies)).startswith("${RABBITMQ_ERLANG_COOKIE:?")
    brokers = [
        name for name, s in cluster["services"].items() if str(s.get("image", "")).startswith("rabbitmq:")
    ]
    assert brokers == list(CLUSTER.brokers)
    hostnames = [cluster["services"][name]["hostname"] for name in CLUSTER.brokers]
    assert hostnames == list(CLUSTER.brokers)  # distinct, and the names the others reach them by
    conf = rabbitmq_conf()
    assert conf["cluster_formation.peer_discovery_backend"] == "classic_config"
    peers = sorted(v for k, v in conf.items() if k.startswith("cluster_formation.classic_config.nodes."))
    assert peers == [f"rabbit@{h}" for h in hostnames]
    for name in CLUSTER.brokers:
        service = cluster["services"][name]
        # The same configuration in each node's conf.d (beside the image's defaults), its own data.
        assert "./deploy/rabbitmq/rabbitmq.conf:/etc/rabbitmq/conf.d/20-cluster.conf:ro" in service["volumes"]
        data = [v for v in service["volumes"] if v.endswith(":/var/lib/rabbitmq")]
        assert data == [f"{name}-data:/var/lib/rabbitmq"], name
        assert "depends_on" not in service, name  # the nodes start together
    # No secret in the configuration: the password and the cookie come from the environment.
    assert not [key for key in conf if "pass" in key or "cookie" in key]


def test_every_amqp_url_lists_the_three_nodes(cluster: dict[str, Any]) -> None:
    urls = amqp_urls(cluster)
    assert set(urls) >= {"router-1", "router-2", "api", "scheduler", "history", "openklant"}
    for name, url in urls.items():
        hosts = [urlsplit(address).hostname for address in amqp_addresses(url)]
        assert hosts == list(CLUSTER.brokers), name
        for node in CLUSTER.brokers:
            assert cluster["services"][name]["depends_on"][node] == {"condition": "service_healthy"}, name


def test_the_processes_run_apart_with_two_routers(cluster: dict[str, Any]) -> None:
    services = cluster["services"]

    def running(*argv: str) -> list[str]:
        return [n for n, s in services.items() if s.get("command", [])[1 : 1 + len(argv)] == list(argv)]

    assert running("router") == ["router-1", "router-2"]
    assert running("api") == ["api"]
    assert running("scheduler") == ["scheduler"]
    assert running("history", "consume") == ["history"]
    assert running("export", "openklant") == ["openklant"]
    assert not running("serve")  # no process does everything
    # The export needs rules with an `openklant:` section and their tokens: started by profile only.
    assert services["openklant"]["profiles"] == ["openklant"]
    assert all("profiles" not in s for n, s in services.items() if n != "openklant")
    # Everything but the broker and the other backing services is the image of this repository.
    for name, service in services.items():
        assert (name in CLUSTER.backing) != ("build" in service), name


@pytest.fixture
def metrics_server() -> Iterator[tuple[int, list[bytes]]]:
    """A /metrics that answers what the test puts in `body[0]`."""
    body = [b""]

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/metrics" else 404)
            self.end_headers()
            self.wfile.write(body[0])

        def log_message(self, *args: Any) -> None:
            return None

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], body
    server.shutdown()


@pytest.mark.parametrize(
    ("service", "healthy", "unhealthy"),
    [
        (
            "router-1",
            b'contact_router_consumer_attached{consumer="router"} 1.0\n',
            b'contact_router_consumer_attached{consumer="router"} 0.0\n',
        ),
        (
            "scheduler",
            b'contact_router_dependency_up{dependency="redis"} 1.0\n',
            b'contact_router_dependency_up{dependency="redis"} 0.0\n',
        ),
    ],
)
def test_the_metrics_healthchecks_say_what_they_read(
    cluster: dict[str, Any],
    metrics_server: tuple[int, list[bytes]],
    service: str,
    healthy: bytes,
    unhealthy: bytes,
) -> None:
    """The router's healthcheck passes while its consumer is attached, the scheduler's while Redis
    answers; both fail when the process does not answer. Run as the image would (its `python`, here
    the interpreter running the tests) against a local /metrics."""
    port, body = metrics_server
    test = cluster["services"][service]["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"]
    assert f"127.0.0.1:{cluster['services'][service]['environment']['METRICS_PORT']}/metrics" in test[3]

    def run(at: int) -> int:
        code = test[3].replace(":9102/", f":{at}/")
        return subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=30).returncode

    body[0] = b"# HELP ...\n" + healthy
    assert run(port) == 0
    body[0] = unhealthy
    assert run(port) != 0
    assert run(closed_port()) != 0


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
