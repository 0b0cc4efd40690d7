"""A client generated from the served OpenAPI document drives the API (issue 16, item 8): what an
integrator does with `openapi-python-client generate --url …/v1/openapi.json`. The typed answers
must parse into the generated models, or the document lies about the shapes.

The client is generated afresh from the document this service serves, into the test's own directory,
and drives a contact through a transfer and a callback request with its attempt.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import sys
import uuid
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.harness import Harness, wait_routed

pytestmark = pytest.mark.slow


async def generate(backend: Harness, where: Path) -> ModuleType:
    resp = await backend.client.get("/v1/openapi.json")
    assert resp.status == 200
    document = where / "openapi.json"
    document.write_text(json.dumps(await resp.json()), encoding="utf-8")
    package = f"generated_{backend.kind}_{uuid.uuid4().hex[:8]}"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "openapi_python_client",
        "generate",
        "--path",
        str(document),
        "--meta",
        "none",
        "--output-path",
        str(where / package),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output = (await asyncio.wait_for(proc.communicate(), 120))[0].decode()
    assert proc.returncode == 0, output
    # Every schema of the document became a model: nothing was dropped as unparseable.
    assert "Warning" not in output, output
    sys.path.insert(0, str(where))
    try:
        return importlib.import_module(package)
    finally:
        sys.path.remove(str(where))


async def test_a_generated_client_drives_a_transfer_and_a_callback(backend: Harness, tmp_path: Path) -> None:
    client_pkg = await generate(backend, tmp_path)

    def load(name: str) -> Any:
        return importlib.import_module(f"{client_pkg.__name__}.{name}")

    models = load("models")
    api = {
        name: load(f"api.default.{name}")
        for name in (
            "submit_contact",
            "get_contact",
            "transfer_contact",
            "create_callback_request",
            "record_callback_attempt",
            "list_items",
        )
    }
    base_url = str(backend.client.make_url("")).rstrip("/")
    client = client_pkg.AuthenticatedClient(base_url=base_url, token="secret-key")
    async with client as http:
        contact = models.Contact(
            tenant=models.ContactTenant.OMMEN,
            channel="phone",
            received_at=backend.clock.now(),
            source=models.Source(adapter="generated", native_id=uuid.uuid4().hex),
            subject="Vraag over mijn aanslag",
            body="Ik begrijp mijn aanslag niet.",
            sender=models.Sender(name="Test Inwoner", phone="06 12345678"),
        )
        accepted = await api["submit_contact"].asyncio_detailed(client=http, body=contact)
        assert accepted.status_code == 202, accepted.content
        assert isinstance(accepted.parsed, models.Accepted)
        cid = accepted.parsed.id
        await wait_routed(backend.rt, cid)

        view = await api["get_contact"].asyncio_detailed(cid, client=http)
        assert isinstance(view.parsed, models.ContactView), view.content
        assert view.parsed.team == "belastingen" and view.headers["ETag"] == f'"{view.parsed.version}"'

        moved = await api["transfer_contact"].asyncio_detailed(
            cid,
            client=http,
            body=models.TransferIn(
                agent="kcc-017",
                to_team=models.TransferInToTeam.BURGERZAKEN,
                from_team=models.TransferInFromTeam.BELASTINGEN,
                note="Inwoner vraagt naar burgerzaken",
            ),
        )
        assert moved.status_code == 200, moved.content
        assert isinstance(moved.parsed, models.Transferred)
        assert (moved.parsed.team, moved.parsed.transfers, moved.parsed.outcome.value) == (
            "burgerzaken",
            1,
            "transferred",
        )

        asked = await api["create_callback_request"].asyncio_detailed(
            cid,
            client=http,
            body=models.CallbackRequestIn(
                agent="kcc-017", reason="Even terugbellen", preferred_time="na 15:00"
            ),
        )
        assert asked.status_code == 201, asked.content
        callback = asked.parsed
        assert isinstance(callback, models.CallbackRequest)
        assert (callback.team, callback.phone, callback.status.value) == (
            "burgerzaken",
            "+31612345678",
            "open",
        )

        tried = await api["record_callback_attempt"].asyncio_detailed(
            callback.id,
            client=http,
            body=models.AttemptIn(agent="kcc-018", outcome=models.AttemptInOutcome.REACHED),
        )
        assert tried.status_code == 200, tried.content
        assert isinstance(tried.parsed, models.CallbackRequest)
        assert (tried.parsed.status.value, tried.parsed.closed_reason) == ("closed", "reached")

        listing = await api["list_items"].asyncio_detailed(
            models.ListItemsTenant.OMMEN, models.ListItemsTeam.BURGERZAKEN, client=http
        )
        assert isinstance(listing.parsed, models.WorkList), listing.content
        [item] = [i for i in listing.parsed.items if i.id == cid]
        assert isinstance(item, models.ContactItem) and item.last_note == "Inwoner vraagt naar burgerzaken"
