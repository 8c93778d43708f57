"""Every component kind in both parameter formats, end to end against the mock: the catalogue
synced from the mock, a campaign created from it, contacts imported, the daemon sending, and
each body the mock recorded checked three ways: the mock's (patched) schema, the mock's
template check, and Meta's official schema with exactly the documented exceptions
(tests/templates_matrix.py). The kind x result table is printed (`pytest -s`)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from daemon.core.payload import Template, decode_callback_data
from daemon.core.states import CampaignCommand
from daemon.db.campaigns import change_campaign_state, create_campaign
from daemon.db.importer import import_contacts
from daemon.db.templates_store import save_catalogue
from daemon.mockapi.config import MockConfig
from daemon.mockapi.server import RunningMock, start_mock_server
from daemon.mockapi.template_check import template_problem
from daemon.mockapi.validation import TemplateMessageValidator
from daemon.ops.create import CampaignRequest, create_campaign_from_request
from daemon.whatsapp.management import fetch_templates, management_session
from tests.helpers.daemon import daemon_config, running_daemon, wait_until_final
from tests.templates_matrix import CASES, HEADER_FILES, Case, OfficialSchema

WABA = "102290129340398"
PHONE = "106540352242922"
CONTACTS = 3


async def sync_catalogue(conn: asyncpg.Connection, mock: RunningMock) -> int:
    async with management_session("test-token", timeout_s=5.0) as session:
        documents = await fetch_templates(session, mock.base_url, "v23.0", WABA, limit=7)
    result = await save_catalogue(conn, WABA, documents)
    return result.stored


async def create(conn: asyncpg.Connection, case: Case, number: int, tmp_path: Path) -> int:
    if case.params:  # today's campaigns: a template name and --param columns, unverified
        template = Template(case.template, "en_US", case.params)
        campaign_id = await create_campaign(conn, case.id, template, PHONE)
    else:
        header_file = None
        if case.header_file is not None:
            header_file = tmp_path / case.header_file
            header_file.write_bytes(HEADER_FILES[header_file.suffix])
        request = CampaignRequest(
            name=case.id,
            template=case.template,
            language="en_US",
            phone_number_id=PHONE,
            sets=case.sets,
            param_types=case.param_types,
            header_file=header_file,
            message_send_ttl_seconds=case.ttl,
            product_policy=case.policy,
        )
        campaign_id = (await create_campaign_from_request(conn, request, WABA)).campaign_id
    path = tmp_path / f"{number}.csv"
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(["phone", *case.values])
        for i in range(CONTACTS):
            row = [v.format(i=i) for v in case.values.values()]
            writer.writerow([f"+4479{number:04d}{i:04d}", *row])
    result = await import_contacts(conn, campaign_id, path)
    assert (result.imported, result.invalid) == (CONTACTS, 0), (case.id, result.reasons)
    await change_campaign_state(conn, campaign_id, CampaignCommand.START)
    return campaign_id


def check_body(
    case: Case,
    endpoint: str,
    body: dict[str, Any],
    mock: RunningMock,
    official: OfficialSchema,
    validators: dict[str, TemplateMessageValidator],
) -> dict[str, Any]:
    """One recorded body, checked; the row of the report's table."""
    assert validators[endpoint].is_schema_valid(body), (case.id, body)
    marketing = endpoint == "marketing_messages"
    assert (
        template_problem(body["template"], mock.api.catalogue, marketing_endpoint=marketing) is None
    )
    with_undo, as_is, not_needed = official.needed_exceptions(endpoint, body, case.exceptions)
    assert with_undo, (case.id, "still refused by the official schema", body)
    assert not as_is, (case.id, "no exception needed at all?")
    assert not_needed == [], (case.id, "listed exceptions it does not need", not_needed)
    dumped = json.dumps(body)
    callback = decode_callback_data(body["biz_opaque_callback_data"])
    assert callback is not None
    return {
        "case": case.id,
        "kind": case.kind,
        "format": "named" if case.named else "positional",
        "endpoint": endpoint,
        "exceptions": sorted(case.exceptions),
        "bytes": len(dumped),
    }


@pytest.mark.timeout(240)
async def test_every_component_kind_and_format_goes_end_to_end(
    db_dsn: str, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    official = OfficialSchema()
    validators = {
        "messages": TemplateMessageValidator(),
        "marketing_messages": TemplateMessageValidator(marketing=True),
    }
    campaigns: dict[int, Case] = {}
    async with start_mock_server(MockConfig(record_bodies=True)) as mock:
        assert await sync_catalogue(conn, mock) == len(mock.api.catalogue.documents)
        for number, case in enumerate(CASES):
            if not case.marketing:
                campaigns[await create(conn, case, number, tmp_path)] = case
        async with running_daemon(daemon_config(mock.base_url), db_dsn):
            for campaign_id in campaigns:
                assert await wait_until_final(conn, campaign_id) == {"sent": CONTACTS}
        for number, case in enumerate(CASES):
            if case.marketing:
                campaigns[await create(conn, case, number, tmp_path)] = case
        mm = daemon_config(mock.base_url, whatsapp={"marketing_endpoint": "marketing_messages"})
        async with running_daemon(mm, db_dsn):
            for campaign_id, case in campaigns.items():
                if case.marketing:
                    assert await wait_until_final(conn, campaign_id) == {"sent": CONTACTS}
        assert mock.state.errors_by_code == {}  # the mock refused nothing

        table: dict[str, dict[str, Any]] = {}
        seen: dict[int, int] = {}
        for endpoint, number, body in mock.state.bodies:
            assert number == PHONE
            callback = decode_callback_data(body["biz_opaque_callback_data"])
            assert callback is not None
            case = campaigns[callback.campaign_id]
            seen[callback.campaign_id] = seen.get(callback.campaign_id, 0) + 1
            expected = (
                "marketing_messages"
                if case.marketing and case.template.startswith("sample_copy_code")
                else "messages"
            )
            assert endpoint == expected, case.id
            table[case.id] = check_body(case, endpoint, body, mock, official, validators)
            if case.header_file is not None:  # sent by the id of its upload for this number
                header = body["template"]["components"][0]["parameters"][0]
                uploaded = mock.state.media[header[header["type"]]["id"]]
                assert (uploaded.phone_number_id, uploaded.filename) == (PHONE, case.header_file)
            for key, value in case.values.items():
                if not key.endswith((".amount", ".code")):  # amounts are sent as amount_1000
                    text = json.dumps(value.format(i=_contact_index(body)))
                    assert text[1:-1] in json.dumps(body), (case.id, key)
        assert seen == dict.fromkeys(campaigns, CONTACTS)
        # The uploaded-file campaigns (a document and an image, each in both formats): once each.
        with_file = [c for c in campaigns.values() if c.header_file is not None]
        assert mock.state.uploads == {PHONE: len(with_file)} and len(with_file) == 4
        assert sorted(m.filename for m in mock.state.media.values()) == sorted(
            c.header_file for c in with_file
        )
        assert {m.mime_type for m in mock.state.media.values()} == {"application/pdf", "image/png"}
    print_table(table)


def _contact_index(body: dict[str, Any]) -> int:
    return int(body["to"][-4:])


def print_table(table: dict[str, dict[str, Any]]) -> None:
    print(
        "\n| component kind | format | endpoint | mock schema + template check | official"
        " schema: exceptions needed |"
    )
    print("|---|---|---|---|---|")
    for row in table.values():
        exceptions = ", ".join(row["exceptions"])
        print(
            f"| {row['kind']} | {row['format']} | /{row['endpoint']} | accepted, 3/3 sent |"
            f" valid with: {exceptions} |"
        )
