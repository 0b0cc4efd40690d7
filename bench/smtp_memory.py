"""`python -m bench.smtp_memory`: how much resident memory one large mail costs the SMTP server.

Issue 15's target: receiving a 20 MB mail costs less than 3× its size in peak RSS above the idle RSS
(the first target, issue 13's, was that a 23 MB mail must not take ~175 MB more). The mail is a scan
of ~15 MB, base64-encoded, in one attachment or split over `--parts` attachments. Each stage runs in
a process of its own (peak RSS only grows), which runs an SMTP server and has a child process build
and send the mail, so the client's copies do not count:

- `stock`: aiosmtpd's own SMTP class receiving the mail, with a handler that only takes the bytes;
- `receive`: the same with the adapter's `BoundedSMTP` (DATA into one buffer);
- `adapter`: the mail adapter's SMTP server as `serve` runs it: `BoundedSMTP`, the real handler, the
  parser and the shared publishing path, with an in-memory publisher.

Printed per stage: the peak RSS growth (`ru_maxrss`) over the baseline after a warm-up mail, that
growth as a multiple of the mail's size, and the RSS after the mail.

    python -m bench.smtp_memory [--mb 20] [--parts 1] [--limit-mb 25] [--stage S] [--max-growth-mb N]
                                [--max-ratio 3] [--json]

With `--max-growth-mb` or `--max-ratio` it exits 1 when the adapter's growth is larger (a quick check
by hand or in CI).
Figures, not timed tests: see docs/performance.md.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP

from adapters.kit.context import MemoryDeadLetters
from adapters.kit.settings import AdapterSettings
from adapters.kit.wiring import build_context, start_adapters, stop_adapters
from adapters.mail.smtp_server import BoundedSMTP
from router import logs
from router.core.clock import SystemClock
from router.core.contact import Contact
from router.core.tenants import load as load_tenants

RULES = Path(__file__).resolve().parent.parent / "rules"
STAGES = ("stock", "receive", "adapter")

# The child: builds a mail of about `mb` megabytes (a text part plus a random "scan" attachment) and
# sends it with smtplib. Random bytes, so that no layer can compress or share them.
CLIENT = r"""
import os, smtplib, sys
from email import policy
from email.message import EmailMessage
port, mb, parts = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
msg = EmailMessage()
msg["From"] = "Bewoner <bewoner@example.nl>"
msg["To"] = "info@ommen.nl"
msg["Subject"] = "Bouwtekening"
msg.set_content("Hierbij de tekening voor mijn aanvraag.")
if mb > 0:
    size = int(mb * 1_000_000 * 3 / 4 * 0.976 / parts)  # base64 (76-char lines + CRLF): ~1.37×
    for i in range(parts):
        msg.add_attachment(os.urandom(size), maintype="application", subtype="pdf", filename=f"scan-{i}.pdf")
data = msg.as_bytes(policy=policy.SMTP)  # CRLF line ends, as on the wire
with smtplib.SMTP("127.0.0.1", port, timeout=120) as client:
    try:
        client.sendmail("bewoner@example.nl", ["info@ommen.nl"], data)
        print("250", len(data))
    except smtplib.SMTPException as exc:
        print(getattr(exc, "smtp_code", "?"), len(data))
"""


class CountingPublisher:
    """Publishes nowhere; keeps the count only (the contact is small: the body is capped, attachments
    are metadata)."""

    def __init__(self) -> None:
        self.count = 0

    async def publish(self, contact: Contact) -> None:
        self.count += 1

    async def close(self) -> None:
        return None


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def current_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def send(port: int, mb: float, parts: int = 1) -> tuple[str, int]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CLIENT, str(port), str(mb), str(parts), stdout=subprocess.PIPE
    )
    out, _ = await proc.communicate()
    code, size = out.decode().split()
    return code, int(size)


class KeepHandler:
    """Takes the mail and keeps its size only: what receiving costs, without parsing."""

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        envelope.content = envelope.original_content = None
        return "250 OK"


async def measure(stage: str, mb: float, limit_mb: float, parts: int = 1) -> dict[str, Any]:
    limit = int(limit_mb * 1_000_000)
    publisher = CountingPublisher()
    stop: Any
    if stage == "adapter":
        settings = AdapterSettings(
            adapters_enabled="mail", smtp_port=0, mail_routes="info@ommen.nl:ommen", mail_max_bytes=limit
        )
        ctx = build_context(
            publisher=publisher,
            dead_letters=MemoryDeadLetters(),
            tenants=load_tenants(RULES),
            clock=SystemClock(),
            settings=settings,
        )
        await start_adapters(ctx)
        port = ctx.adapters["mail"].smtp_port  # type: ignore[attr-defined]

        async def stop() -> None:
            await stop_adapters(ctx, within=5)
    else:
        cls = SMTP if stage == "stock" else BoundedSMTP
        server = await asyncio.get_running_loop().create_server(
            lambda: cls(KeepHandler(), data_size_limit=limit), "127.0.0.1", 0
        )
        port = server.sockets[0].getsockname()[1]

        async def stop() -> None:
            server.close()
            await server.wait_closed()

    try:
        await send(port, 0.05)  # warm-up: imports, parser paths, first allocations
        gc.collect()
        base_peak, base_now = peak_rss_mb(), current_rss_mb()
        code, size = await send(port, mb, parts)
        gc.collect()
        growth = peak_rss_mb() - base_peak
        return {
            "stage": stage,
            "mail_bytes": size,
            "parts": parts,
            "peak_ratio": round(growth * 1_048_576 / size, 2),
            "smtp_reply": code,
            "published": publisher.count,
            "baseline_rss_mb": round(base_now, 1),
            "peak_growth_mb": round(growth, 1),
            "rss_after_mb": round(current_rss_mb(), 1),
        }
    finally:
        await stop()


def run_stage(stage: str, mb: float, limit_mb: float, parts: int = 1) -> dict[str, Any]:
    """One stage in a fresh interpreter: ru_maxrss never goes down, so stages must not share one."""
    argv = ["--stage", stage, "--mb", str(mb), "--parts", str(parts), "--limit-mb", str(limit_mb), "--json"]
    out = subprocess.run(
        [sys.executable, "-m", "bench.smtp_memory", *argv],
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.smtp_memory", description=__doc__.split("\n\n")[0])
    p.add_argument("--mb", type=float, default=20.0, help="size of the mail on the wire, MB (default 20)")
    p.add_argument("--parts", type=int, default=1, help="attachments the scan is split over (default 1)")
    p.add_argument("--limit-mb", type=float, default=25.0, help="MAIL_MAX_BYTES in MB (default 25)")
    p.add_argument("--stage", choices=STAGES, help="run one stage in this process (default: all, apart)")
    p.add_argument("--max-growth-mb", type=float, default=None, help="exit 1 above this (adapter stage)")
    p.add_argument("--max-ratio", type=float, default=None, help="exit 1 above this multiple of the mail")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = p.parse_args(argv)
    if args.stage:
        logs.configure(level="warning", fmt="json")
        results = [asyncio.run(measure(args.stage, args.mb, args.limit_mb, args.parts))]
    else:
        results = [run_stage(stage, args.mb, args.limit_mb, args.parts) for stage in STAGES]
    if args.json:
        for result in results:
            print(json.dumps(result))
    else:
        print(
            f"{'stage':<9} {'mail MB':>8} {'parts':>5} {'reply':>5} {'base MB':>8} {'peak +MB':>9} "
            f"{'× mail':>7} {'after MB':>9}"
        )
        for r in results:
            print(
                f"{r['stage']:<9} {r['mail_bytes'] / 1e6:>8.1f} {r['parts']:>5} {r['smtp_reply']:>5} "
                f"{r['baseline_rss_mb']:>8} {r['peak_growth_mb']:>9} {r['peak_ratio']:>7} "
                f"{r['rss_after_mb']:>9}"
            )
        print("target (issue 15): the adapter's peak growth under 3× the mail (MB of 2^20 bytes)")
    adapter = [r for r in results if r["stage"] == "adapter"]
    if args.max_growth_mb is not None and adapter and adapter[0]["peak_growth_mb"] > args.max_growth_mb:
        return 1
    if args.max_ratio is not None and adapter and adapter[0]["peak_ratio"] > args.max_ratio:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
