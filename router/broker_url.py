"""AMQP_URL: one broker, or the nodes of a RabbitMQ cluster in one URL.

`amqp://user:password@host:port,host:port,host:port/vhost?options` (the form of a `redis+cluster://`
REDIS_URL): one user, vhost and options for every node; a node without a port gets the scheme's. Pure
(no client library): the settings check it, router/amqp/connect.py connects by it.
"""

from __future__ import annotations

from urllib.parse import urlsplit

SCHEMES = {"amqp": 5672, "amqps": 5671}


class AmqpUrlError(ValueError):
    pass


def amqp_addresses(url: str) -> list[str]:
    """One URL per node of `url`, each with the user, vhost and options of the whole. Raises
    AmqpUrlError naming what is wrong, never the password."""
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES:
        raise AmqpUrlError("AMQP_URL must start with amqp:// or amqps://")
    userinfo, at, hosts = parts.netloc.rpartition("@")
    out = []
    for address in hosts.split(","):
        host, port = _host_port(address.strip())
        out.append(parts._replace(netloc=f"{userinfo}{at}{host}:{port or SCHEMES[parts.scheme]}").geturl())
    return out


def _host_port(address: str) -> tuple[str, str]:
    if address.startswith("["):  # an IPv6 address: [::1]:5672
        host, _, rest = address.partition("]")
        host, port = host + "]", rest.removeprefix(":")
    else:
        host, _, port = address.partition(":")
    bare_ipv6 = ":" in host and not host.startswith("[")
    if not host.strip("[]") or bare_ipv6 or not _port(port):
        raise AmqpUrlError(
            "AMQP_URL names each node as host or host:port, comma-separated "
            "(amqp://user:password@host1:5672,host2:5672/vhost)"
        )
    return host, port


def _port(port: str) -> bool:
    return port == "" or (port.isdigit() and 0 < int(port) < 65536)
