"""Parsing a JSON request body into a clear error: the one place both the API and the adapters use."""

from __future__ import annotations

import json
import re
from typing import Any


class BodyError(ValueError):
    """Bad body: an HTTP status, a message naming the problem, and the fields concerned."""

    def __init__(self, status: int, message: str, fields: list[dict[str, str]] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.fields = fields or []

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"error": self.message}
        if self.fields:
            out["fields"] = self.fields
        return out


# A key that may be a field name of a schema; any other key is the sender's own word (in a contact's
# metadata, keys are always the sender's), and a path names it by its position instead: `metadata.#2`.
_FIELD_NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")
_FREE_KEYS = frozenset({"metadata"})


def nul_field(data: Any) -> str | None:
    """Path of the first key or string value holding a NUL character, if any: field names, positions
    of other keys (`#n`, from 1) and list indexes, never a key the sender chose. Iterative, so any depth
    json.loads accepted is fine. (NUL breaks C-string consumers downstream: refuse it.)"""
    # (path, whether every key below is the sender's, value)
    stack: list[tuple[str, bool, Any]] = [("", False, data)]
    while stack:
        path, free, value = stack.pop()
        if isinstance(value, str):
            if "\x00" in value:
                return path or "(body)"
        elif isinstance(value, dict):
            for n, (key, item) in enumerate(value.items(), 1):
                named = not free and "\x00" not in key and _FIELD_NAME.fullmatch(key) is not None
                sub = ".".join(p for p in (path, key if named else f"#{n}") if p)
                if "\x00" in key:
                    return sub
                stack.append((sub, free or key in _FREE_KEYS or not named, item))
        elif isinstance(value, list):
            stack.extend((f"{path}.{i}" if path else str(i), free, item) for i, item in enumerate(value))
    return None


def parse_json(raw: bytes) -> Any:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BodyError(400, f"body is not valid UTF-8 (byte {exc.start})") from exc
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        if isinstance(exc, json.JSONDecodeError):
            msg = exc.msg
        elif isinstance(exc, RecursionError):
            msg = "nested too deeply"
        else:  # int() refuses more than 4300 digits
            msg = "number too long"
        raise BodyError(400, f"malformed JSON: {msg}") from exc
    try:
        # A \ud800-style escape on its own is half a character: no text, and nothing downstream
        # (orjson, Redis, the broker's UTF-8) can carry it.
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise BodyError(400, "malformed JSON: a \\u escape stands for half a character") from None
    if (where := nul_field(data)) is not None:
        raise BodyError(
            422,
            "NUL characters are not allowed",
            [{"field": where, "message": "must not contain NUL characters"}],
        )
    return data
