"""structlog set-up. Log ids, never personal data (names, addresses, phone numbers, BSN, bodies).

Every line is one JSON document (or one console line): the service's own events, and what libraries
(aio-pika, aiormq, aiohttp, aiosmtpd, asyncio) log through the standard `logging` module, which goes
through the same renderer. A library's exception becomes its cause (`error`), not a traceback: a lost
connection is one warning that says why, not a page of frames per retry. A warning or error repeated
word for word is written once per REPEAT_WINDOW seconds, with the number of repeats left out.

Nothing that can hold input is rendered (RELIABILITY.md, "What stays in the record"):
- a library record is written as its template (`record.msg`, first line), never formatted with its
  arguments: aiosmtpd's `%r unrecognised: %s` has the peer and what the client typed as arguments,
  aio-pika's `Connection attempt to "%s" failed` the URL with its password;
- an exception is written as its type, and for the service's own events its frames (file, line,
  function), never its message: a pydantic ValidationError's message names the sender's keys, a
  KeyError's is the key, a mail library's quotes addresses;
- uncaught exceptions (sys.excepthook, threads) go the same way once `configure` ran.
Importing this module also makes two fallbacks safe for processes that never call `configure` (an
integrator's own service, the tests): structlog's default renderer gets the same exception rendering
(its default, rich, prints every frame's local variables), and the standard library's last-resort
handler writes library warnings as their template only.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
import traceback
from types import TracebackType
from typing import Any

import structlog
from structlog.typing import EventDict

# Library loggers that say too much below WARNING (every frame, every reconnect attempt).
_CHATTY = ("aio_pika", "aiormq", "aiohttp", "asyncio", "mail.log", "aiosmtplib", "aioimaplib")
REPEAT_WINDOW = 30.0
# Left out when comparing records. `retry_in` is not: a back-off shows as it grows, then goes quiet.
_VOLATILE = frozenset({"timestamp"})
# A library's template is a short sentence; anything longer is text the library formatted itself.
MAX_TEMPLATE = 200


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


def _exception_of(exc_info: Any) -> BaseException | None:
    if exc_info is True:
        return sys.exc_info()[1]
    if isinstance(exc_info, BaseException):
        return exc_info
    if isinstance(exc_info, tuple) and len(exc_info) == 3:
        found = exc_info[1]
        return found if isinstance(found, BaseException) else None
    return None


def _type_name(exc_type: type[BaseException]) -> str:
    module = exc_type.__module__
    return exc_type.__qualname__ if module == "builtins" else f"{module}.{exc_type.__qualname__}"


def frames_only(exc: BaseException) -> str:
    """A traceback with every frame (file, line, function, source line) and the type of each exception
    in the chain, but no exception message: messages quote input (ValidationError, KeyError, mail and
    HTTP libraries), frames are the code's own."""
    chain: list[tuple[BaseException, str]] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    link = ""
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        chain.append((current, link))
        if current.__cause__ is not None:
            current, link = current.__cause__, "The above was the direct cause of the exception below."
        elif current.__context__ is not None and not current.__suppress_context__:
            current, link = current.__context__, "The exception below happened while handling the above."
        else:
            current = None
    out: list[str] = []
    for i, (item, _) in enumerate(reversed(chain)):
        if i:
            out.append("\n" + chain[len(chain) - i][1] + "\n\n")
        out.append("Traceback (most recent call last; the message is left out: it may quote input):\n")
        out.extend(traceback.StackSummary.extract(traceback.walk_tb(item.__traceback__)).format())
        out.append(_type_name(type(item)) + "\n")
    return "".join(out).rstrip("\n")


def _safe_exc_info(_logger: Any, _method: str, event_dict: EventDict) -> EventDict:
    """The service's own `log.exception` / `exc_info=`: frames and types, never the messages."""
    exc_info = event_dict.pop("exc_info", None)
    exc = _exception_of(exc_info) if exc_info else None
    if exc is not None:
        event_dict.setdefault("error", type(exc).__name__)
        event_dict["exception"] = frames_only(exc)
    return event_dict


def _cause_not_traceback(_logger: Any, _method: str, event_dict: EventDict) -> EventDict:
    """A library's exception as its type and (for connection errors) the reason, without frames."""
    exc = _exception_of(event_dict.pop("exc_info", None))
    event_dict.pop("stack_info", None)
    if exc is not None:
        event_dict["error"] = type(exc).__name__
        # strerror is the operating system's own text ("Connection refused"), never input.
        if isinstance(exc, OSError) and isinstance(exc.strerror, str) and exc.strerror:
            event_dict["cause"] = exc.strerror
    return event_dict


def template(record: logging.LogRecord) -> str:
    """What a library record says, without anything it was formatted with: the template's first line.
    A record without arguments was formatted by the library itself (asyncio's `Exception in callback
    <repr of the callback and its arguments>`): its text is kept up to the first parenthesis."""
    msg = record.msg
    if not isinstance(msg, str):
        return f"({type(msg).__name__} logged)"  # an exception or object logged as the message
    text = msg.split("\n", 1)[0].strip()
    if not record.args:
        text = text.split("(", 1)[0].rstrip()
    return text[:MAX_TEMPLATE]


def _library_template(_logger: Any, _method: str, event_dict: EventDict) -> EventDict:
    record = event_dict.get("_record")
    if isinstance(record, logging.LogRecord):
        event_dict["event"] = template(record)
        event_dict.pop("positional_args", None)
        repeated = getattr(record, "repeated", 0)
        if repeated:
            event_dict["repeated"] = repeated
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
            record.repeated = dropped
        return True


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever sys.stderr is when the record comes (pytest swaps it)."""

    def __init__(self, level: int = logging.NOTSET):
        super().__init__(sys.stderr)
        self.setLevel(level)

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        return None


def _library_handler(renderer: structlog.typing.Processor, level: int = logging.NOTSET) -> logging.Handler:
    handler = _StderrHandler(level)
    handler.addFilter(_LibraryRepeats())
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[
                _library_template,
                structlog.stdlib.add_log_level,
                structlog.stdlib.add_logger_name,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
                _cause_not_traceback,
            ],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
            use_get_message=False,
        )
    )
    return handler


_log_uncaught: structlog.typing.FilteringBoundLogger | None = None


def _excepthook(exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
    if _log_uncaught is None or issubclass(exc_type, KeyboardInterrupt):
        sys.__excepthook__(exc_type, exc, tb)
        return
    _log_uncaught.critical("uncaught_exception", exc_info=(exc_type, exc, tb))


def _thread_excepthook(args: threading.ExceptHookArgs) -> None:
    if args.exc_value is None or _log_uncaught is None:
        return
    exc = args.exc_value
    _log_uncaught.error("thread_exception", thread=args.thread.name if args.thread else None, exc_info=exc)


def configure(level: str = "info", fmt: str = "json") -> None:
    global _log_uncaught
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
            _safe_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(lvl),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
    root = logging.getLogger()
    root.handlers = [_library_handler(renderer)]
    root.setLevel(lvl)
    for name in _CHATTY:
        logging.getLogger(name).setLevel(max(lvl, logging.WARNING))
    _log_uncaught = get("router.uncaught")
    sys.excepthook = _excepthook
    threading.excepthook = _thread_excepthook


def get(name: str) -> structlog.typing.FilteringBoundLogger:
    logger: structlog.typing.FilteringBoundLogger = structlog.get_logger(name)
    return logger


def _safe_fallbacks() -> None:
    """For processes that never call `configure` (see the module's docstring)."""
    if not structlog.is_configured():
        structlog.configure(
            processors=[
                structlog.contextvars.merge_contextvars,
                structlog.processors.add_log_level,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
                _safe_exc_info,
                structlog.dev.ConsoleRenderer(exception_formatter=structlog.dev.plain_traceback),
            ]
        )
    # The standard library's own fallback writes "%(message)s": every argument, as plain text.
    if type(logging.lastResort) is getattr(logging, "_StderrHandler", None):
        logging.lastResort = _library_handler(structlog.processors.JSONRenderer(), logging.WARNING)


_safe_fallbacks()
