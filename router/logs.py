"""structlog set-up. Log ids, never personal data (names, addresses, phone numbers, BSN, bodies).

Every line is one JSON document (or one console line): the service's own events, and what libraries
(aio-pika, aiormq, aiohttp, aiosmtpd, asyncio) log through the standard `logging` module, which goes
through the same renderer. A library's exception becomes its cause (`error`), not a traceback: a lost
connection is one warning that says why, not a page of frames per retry. A warning or error repeated
word for word is written once per REPEAT_WINDOW seconds, with the number of repeats left out.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import structlog
from structlog.typing import EventDict

# Library loggers that say too much below WARNING (every frame, every reconnect attempt).
_CHATTY = ("aio_pika", "aiormq", "aiohttp", "asyncio", "mail.log", "aiosmtplib", "aioimaplib")
REPEAT_WINDOW = 30.0
# Left out when comparing records. `retry_in` is not: a back-off shows as it grows, then goes quiet.
_VOLATILE = frozenset({"timestamp"})


class Repeats:
    """Counts repeats of the same record (same level, event and fields) within REPEAT_WINDOW seconds."""

    def __init__(self, window: float = REPEAT_WINDOW, clock: Any = time.monotonic):
        self.window = window
        self.clock = clock
        self._seen: dict[tuple[Any, ...], tuple[float, int]] = {}

    def admit(self, key: tuple[Any, ...]) -> int | None:
        """None: drop it (a repeat). Otherwise write it, and this many repeats were dropped before it."""
        now = self.clock()
        first, dropped = self._seen.get(key, (None, 0))
        if first is not None and now - first < self.window:
            self._seen[key] = (first, dropped + 1)
            return None
        if len(self._seen) > 10_000:  # distinct keys are bounded in practice; never grow without end
            self._seen.clear()
        self._seen[key] = (now, 0)
        return dropped


_repeats = Repeats()


def _rate_limit(_logger: Any, method: str, event_dict: EventDict) -> EventDict:
    if method not in ("warning", "error", "critical", "exception"):
        return event_dict
    key = (method, *sorted((k, repr(v)) for k, v in event_dict.items() if k not in _VOLATILE))
    dropped = _repeats.admit(key)
    if dropped is None:
        raise structlog.DropEvent
    if dropped:
        event_dict["repeated"] = dropped
    return event_dict


def _cause_not_traceback(_logger: Any, _method: str, event_dict: EventDict) -> EventDict:
    """A library's exception as its type and (for connection errors) the reason, without frames."""
    exc_info = event_dict.pop("exc_info", None)
    if exc_info and exc_info is not True:
        exc = exc_info[1]
        event_dict["error"] = type(exc).__name__
        if isinstance(exc, OSError | ConnectionError) and exc.strerror:
            event_dict["cause"] = exc.strerror
    return event_dict


class _LibraryRepeats(logging.Filter):
    """Rate limiting for library records, by logger and message template (args may vary)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        dropped = _repeats.admit(("library", record.name, record.levelno, str(record.msg)))
        if dropped is None:
            return False
        if dropped:
            record.msg = f"{record.msg} (repeated {dropped} times)"
        return True


def configure(level: str = "info", fmt: str = "json") -> None:
    lvl = getattr(logging, level.upper(), logging.INFO)
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        # Plain tracebacks: the pretty ones print local variables, which may hold a resident's message.
        else structlog.dev.ConsoleRenderer(exception_formatter=structlog.dev.plain_traceback)
    )
    timestamper = structlog.processors.TimeStamper(fmt="iso", utc=True)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            timestamper,
            _rate_limit,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(lvl),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_LibraryRepeats())
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[
                structlog.stdlib.add_log_level,
                structlog.stdlib.add_logger_name,
                timestamper,
                _cause_not_traceback,
            ],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(lvl)
    for name in _CHATTY:
        logging.getLogger(name).setLevel(max(lvl, logging.WARNING))


def get(name: str) -> structlog.typing.FilteringBoundLogger:
    logger: structlog.typing.FilteringBoundLogger = structlog.get_logger(name)
    return logger
