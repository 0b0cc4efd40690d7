"""A three-node RabbitMQ cluster on loopback, beside the machine's own broker, for the cluster tests.

The nodes are the installed Debian `rabbitmq-server`, started as child processes with everything of
their own in a temporary directory: node name, AMQP and distribution ports, data, logs, pid file, an
empty plugin list (no management plugin: a third of a node's memory and start-up time) and an Erlang
cookie in a temporary HOME, which every `rabbitmqctl` call gets too. The machine's broker and its epmd
are never touched: the nodes register with the running epmd (started only if none runs, and stopped
only then).
"""

from __future__ import annotations

import contextlib
import os
import resource
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tests.faults.helpers import free_port

SBIN = Path("/usr/lib/rabbitmq/lib")
# Each quorum queue holds a few file descriptors per node; Debian's default limit of 1024 runs out.
FILE_LIMIT = 16_384


def rabbit_sbin() -> Path:
    """The scripts of the installed server itself, not Debian's wrapper (which re-runs them as the
    `rabbitmq` user, with the system's environment file and /var/lib/rabbitmq)."""
    found = sorted(SBIN.glob("rabbitmq_server-*/sbin"))
    if not found:
        raise RuntimeError("rabbitmq-server is not installed (no /usr/lib/rabbitmq/lib/rabbitmq_server-*)")
    return found[-1]


def _epmd_running() -> bool:
    return subprocess.run(["epmd", "-names"], capture_output=True, timeout=10).returncode == 0


@dataclass
class Node:
    index: int
    name: str
    port: int
    dist_port: int
    base: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def pid_file(self) -> Path:
        return self.base / "node.pid"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


class RabbitCluster:
    """`start()` boots three nodes and joins nodes 2 and 3 to node 1; `kill(i)` SIGKILLs a node's
    Erlang VM, `restart(i)` starts it again on its own data; `stop()` ends every node it started."""

    def __init__(self, size: int = 3, prefix: str = "rmq-t"):
        self.sbin = rabbit_sbin()
        self.root = Path(tempfile.mkdtemp(prefix="contact-router-cluster-"))
        self.home = self.root / "home"
        self.home.mkdir()
        cookie = self.home / ".erlang.cookie"
        cookie.write_text(secrets.token_hex(20).upper())
        cookie.chmod(0o600)
        (self.root / "enabled_plugins").write_text("[].\n")
        (self.root / "rabbitmq-env.conf").write_text("")
        # A per-run suffix: a node name left registered by a killed run never collides with this one.
        run = secrets.token_hex(2)
        self.nodes = [
            Node(i, f"{prefix}{i}-{run}@localhost", free_port(), free_port(), self.root / f"n{i}")
            for i in range(1, size + 1)
        ]
        self.started_epmd = False

    @property
    def url(self) -> str:
        """AMQP_URL naming every node."""
        return "amqp://guest:guest@" + ",".join(n.address for n in self.nodes) + "/"

    def env(self, node: Node) -> dict[str, str]:
        config = node.base / "rabbitmq"
        return {
            **{k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "ERL_"))},
            "HOME": str(self.home),
            "RABBITMQ_NODENAME": node.name,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(node.port),
            "RABBITMQ_DIST_PORT": str(node.dist_port),
            "RABBITMQ_CONF_ENV_FILE": str(self.root / "rabbitmq-env.conf"),
            "RABBITMQ_CONFIG_FILE": str(config),  # rabbitmq.conf, written by _prepare
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(node.base / "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.root / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(node.base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(node.base / "log"),
            "RABBITMQ_PID_FILE": str(node.pid_file),
            # Loopback only, as the machine's broker: epmd and the distribution listener alike.
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "ERL_FLAGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        }

    def _prepare(self, node: Node) -> None:
        (node.base / "log").mkdir(parents=True, exist_ok=True)
        (node.base / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{node.port}\n"
            "loopback_users.guest = true\n"
            # Three nodes and the machine's broker share a small machine.
            "vm_memory_high_watermark.relative = 0.1\n"
            "log.file.level = warning\n"
            "log.console = false\n"
        )

    def ctl(self, node: Node, *args: str, timeout: float = 60, check: bool = True) -> str:
        done = subprocess.run(
            [str(self.sbin / "rabbitmqctl"), "-n", node.name, *args],
            env=self.env(node),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and done.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {' '.join(args)} on {node.name}: {done.stderr.strip()[-500:]}")
        return done.stdout

    def queues(self, node: Node | None = None, *args: str) -> str:
        """`rabbitmq-queues` against a node (the first running one by default)."""
        node = node or next(n for n in self.nodes if self.alive(n))
        done = subprocess.run(
            [str(self.sbin / "rabbitmq-queues"), "-n", node.name, *args],
            env=self.env(node),
            capture_output=True,
            text=True,
            timeout=60,
        )
        return done.stdout

    def _boot(self, node: Node) -> None:
        self._prepare(node)

        def raise_file_limit() -> None:
            soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            want = FILE_LIMIT if hard == resource.RLIM_INFINITY else min(FILE_LIMIT, hard)
            with contextlib.suppress(ValueError, OSError):
                resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), hard))

        log = (node.base / "log" / "console.log").open("ab")
        # Its own session: a Ctrl-C of the test run reaches pytest, and the finalizer stops the nodes.
        node.proc = subprocess.Popen(
            [str(self.sbin / "rabbitmq-server")],
            env=self.env(node),
            cwd=node.base,
            stdout=log,
            stderr=log,
            start_new_session=True,
            preexec_fn=raise_file_limit,
        )
        log.close()

    def _await_boot(self, node: Node, within: float = 90) -> None:
        assert node.proc is not None
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if node.proc.poll() is not None:
                raise RuntimeError(f"{node.name} exited ({node.proc.returncode}); see {node.base / 'log'}")
            done = subprocess.run(
                [str(self.sbin / "rabbitmqctl"), "-n", node.name, "await_startup", "--timeout", "10"],
                env=self.env(node),
                capture_output=True,
                timeout=30,
            )
            if done.returncode == 0:
                return
            time.sleep(0.5)
        raise RuntimeError(f"{node.name} did not start within {within:g} s; see {node.base / 'log'}")

    def start(self) -> RabbitCluster:
        self.started_epmd = not _epmd_running()
        if self.started_epmd:
            subprocess.run(["epmd", "-daemon", "-address", "127.0.0.1"], check=True, timeout=10)
        try:
            for node in self.nodes:
                self._boot(node)
            for node in self.nodes:
                self._await_boot(node)
            first = self.nodes[0]
            for node in self.nodes[1:]:
                self.ctl(node, "stop_app")
                self.ctl(node, "join_cluster", first.name)
                self.ctl(node, "start_app")
            self.await_running(len(self.nodes))
        except BaseException:
            self.stop()
            raise
        return self

    def running(self, via: Node | None = None) -> set[str]:
        """The running nodes as a live node sees them."""
        via = via or next((n for n in self.nodes if self.alive(n)), None)
        if via is None:
            return set()
        out = self.ctl(via, "eval", "rabbit_nodes:all_running().", check=False)
        return {part.strip(" []'\n") for part in out.split(",") if "@" in part}

    def await_running(self, count: int, within: float = 90) -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if len(self.running()) == count:
                return
            time.sleep(0.5)
        raise RuntimeError(f"the cluster did not reach {count} running nodes: {sorted(self.running())}")

    def alive(self, node: Node) -> bool:
        return node.proc is not None and node.proc.poll() is None

    def kill(self, index: int) -> None:
        """SIGKILL of the node's Erlang VM (the pid in its pid file), as a crash or an OOM kill."""
        node = self.nodes[index - 1]
        pid = int(node.pid_file.read_text().strip())
        os.kill(pid, signal.SIGKILL)
        assert node.proc is not None
        node.proc.wait(30)

    def restart(self, index: int, wait: bool = True) -> None:
        node = self.nodes[index - 1]
        assert not self.alive(node)
        node.pid_file.unlink(missing_ok=True)
        self._boot(node)
        if wait:
            self._await_boot(node)

    def memory_mb(self) -> dict[str, int]:
        """Resident memory of each running node (MB), from /proc."""
        out = {}
        for node in self.nodes:
            if self.alive(node) and node.pid_file.exists():
                with contextlib.suppress(OSError, ValueError):
                    status = Path(f"/proc/{node.pid_file.read_text().strip()}/status").read_text()
                    rss = next(line for line in status.splitlines() if line.startswith("VmRSS:"))
                    out[node.name] = int(rss.split()[1]) // 1024
        return out

    def stop(self) -> None:
        """Kill every node of ours (there is nothing to keep), then remove their files."""
        for node in self.nodes:
            if self.alive(node):
                assert node.proc is not None
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(node.proc.pid, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    node.proc.wait(30)
        if self.started_epmd:
            subprocess.run(["epmd", "-kill"], capture_output=True, timeout=10)
        shutil.rmtree(self.root, ignore_errors=True)
