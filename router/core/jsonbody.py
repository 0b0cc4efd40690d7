"""Parsing a JSON request body into a clear error: the one place both the API and the adapters use."""

from __future__ import annotations

import json
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


def nul_field(data: Any) -> str | None:
    """Dotted path of the first key or string value holding a NUL character, if any. Iterative, so
    any depth json.loads accepted is fine. (NUL breaks C-string consumers downstream: refuse it.)"""
    stack: list[tuple[str, Any]] = [("", data)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, str):
            if "\x00" in value:
                return path or "(body)"
        elif isinstance(value, dict):
            for key, item in value.items():
                sub = f"{path}.{key}" if path else str(key)
                if "\x00" in key:
                    return sub.replace("\x00", "\\u0000")
                stack.append((sub, item))
        elif isinstance(value, list):
            stack.extend((f"{path}.{i}" if path else str(i), item) for i, item in enumerate(value))
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
    if (where := nul_field(data)) is not None:
        raise BodyError(
            422,
            "NUL characters are not allowed",
            [{"field": where, "message": "must not contain NUL characters"}],
        )
    return data
