"""The template catalogue as operators use it: `templates sync|list|show`, campaigns created
from a catalogue entry (or a file, or unverified without a catalogue), checked again at
`start`, and paused by the daemon when their template is no longer APPROVED."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import asyncpg

from daemon.core.states import CampaignCommand
from daemon.db.campaigns import change_campaign_state, get_campaign
from daemon.db.importer import import_contacts
from daemon.db.templates_store import save_catalogue
from daemon.errors import TemplateRefusedError
from daemon.mockapi.catalogue import SAMPLE_TEMPLATES
from daemon.mockapi.config import MockConfig
from daemon.mockapi.server import RunningMock, start_mock_server
from daemon.ops.create import CampaignRequest, create_campaign_from_request
from daemon.whatsapp.management import fetch_templates, management_session
from tests.helpers.daemon import daemon_config, running_daemon, state_counts, wait_campaign_state
from tests.test_cli import one_line_error, wa

WABA = "102290129340398"


def env_for(mock: RunningMock, waba: str = WABA) -> dict[str, str]:
    return {
        "WA_SENDER_WHATSAPP_BASE_URL": mock.base_url,
        "WA_SENDER_WHATSAPP_WABA_ID": waba,
        "WA_SENDER_WHATSAPP_ACCESS_TOKEN": "test-token",
        "WA_SENDER_WHATSAPP_PHONE_NUMBER_ID": "106540352242922",
    }


async def cli(dsn: str, mock: RunningMock, *args: str, waba: str = WABA) -> Any:
    return await asyncio.to_thread(wa, dsn, *args, env=env_for(mock, waba))


async def test_sync_reads_every_page_and_marks_templates_gone(
    conn: asyncpg.Connection,
) -> None:
    async with start_mock_server() as mock:
        async with management_session("test-token", timeout_s=5.0) as session:
            pages_before = mock.state.outcomes["template_pages"]
            documents = await fetch_templates(session, mock.base_url, "v23.0", WABA, limit=4)
            pages = mock.state.outcomes["template_pages"] - pages_before
    assert len(documents) == len(SAMPLE_TEMPLATES)
    assert pages == -(-len(SAMPLE_TEMPLATES) // 4)  # every page, following paging.next
    assert {d["name"] for d in documents} == {d["name"] for d in SAMPLE_TEMPLATES}
    assert all(
        set(d) <= {"name", "language", "status", "category", "parameter_format", "components", "id"}
        for d in documents
    )
    first = await save_catalogue(conn, WABA, documents)
    assert (first.stored, first.unlisted) == (len(documents), [])
    again = await save_catalogue(conn, WABA, [d for d in documents if d["name"] != "sample_paused"])
    assert again.unlisted == [("sample_paused", "en_US")]
    assert (
        await conn.fetchval("SELECT status FROM templates WHERE name = 'sample_paused'")
        == "DELETED"
    )


async def test_templates_sync_list_and_show_from_the_command_line(db_dsn: str) -> None:
    async with start_mock_server() as mock:
        synced = await cli(db_dsn, mock, "templates", "sync", "--json")
        assert synced.returncode == 0, synced.stderr
        assert json.loads(synced.stdout) == {
            "waba_id": WABA,
            "stored": len(SAMPLE_TEMPLATES),
            "unlisted": [],
        }
        listed = await cli(db_dsn, mock, "templates", "list")
        assert "sample_rich_named" in listed.stdout and "PAUSED" in listed.stdout
        shown = await cli(db_dsn, mock, "templates", "show", "sample_rich_named")
        assert shown.returncode == 0, shown.stderr
        for key in (
            "header.image.link",
            "body.first_name",
            "body.worth.amount",
            "button.0.url_suffix",
            "button.1.payload",
            "button.2.coupon_code",
            "--set KEY=VALUE",
        ):
            assert key in shown.stdout, key
        otp = await cli(db_dsn, mock, "templates", "show", "sample_otp_one_tap")
        assert "BUTTON 0 OTP (ONE_TAP)" in otp.stdout and "sends body.1" in otp.stdout
        missing = await cli(db_dsn, mock, "templates", "show", "sample_image", "--language", "fr")
        one_line_error(missing, "template 'sample_image' not found in fr (it has: en_US)")
        wrong_waba = await cli(db_dsn, mock, "templates", "sync", waba="999")
        one_line_error(wrong_waba, "code 100")


async def test_show_reads_a_template_file_offline(tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    path.write_text(json.dumps({"data": list(SAMPLE_TEMPLATES)}), encoding="utf-8")
    shown = await asyncio.to_thread(
        wa, None, "templates", "show", "sample_location_named", "--template-file", str(path)
    )
    assert shown.returncode == 0, shown.stderr
    assert "header.location.latitude" in shown.stdout and "NAMED" in shown.stdout


async def test_campaign_create_refuses_what_the_catalogue_does_not_allow(db_dsn: str) -> None:
    async with start_mock_server() as mock:
        assert (await cli(db_dsn, mock, "templates", "sync")).returncode == 0
        base = ("campaign", "create", "--name", "c", "--language", "en_US")
        unknown = await cli(db_dsn, mock, *base, "--template", "autumn")
        one_line_error(unknown, "template 'autumn' is not in the catalogue")
        language = await cli(
            db_dsn,
            mock,
            "campaign",
            "create",
            "--name",
            "c",
            "--template",
            "sample_header_text",
            "--language",
            "fr_FR",
        )
        one_line_error(language, "has no fr_FR version (it has: de_DE, en_US)")
        paused = await cli(db_dsn, mock, *base, "--template", "sample_paused")
        one_line_error(paused, "sample_paused (en_US) is PAUSED, not APPROVED")
        bad_set = await cli(
            db_dsn,
            mock,
            *base,
            "--template",
            "sample_image",
            "--set",
            "header.image.link=http://insecure.example/a.jpg",
        )
        one_line_error(bad_set, "invalid url")
        created = await cli(
            db_dsn,
            mock,
            *base,
            "--template",
            "sample_image",
            "--set",
            "header.image.link=https://cdn.example.com/a.jpg",
        )
        assert created.returncode == 0 and created.stdout.strip().isdigit(), created.stderr
        assert created.stderr == ""


async def test_without_a_catalogue_param_campaigns_work_as_before_and_say_unverified(
    db_dsn: str, tmp_path: Path
) -> None:
    args = (
        "campaign",
        "create",
        "--name",
        "c",
        "--template",
        "spring_sale",
        "--language",
        "en_US",
        "--param",
        "first_name",
        "--phone-number-id",
        "1000001",
    )
    created = await asyncio.to_thread(wa, db_dsn, *args)
    assert created.returncode == 0 and created.stdout.strip().isdigit()
    note = created.stderr.strip().splitlines()
    assert len(note) == 1 and "template spring_sale (en_US) is unverified" in note[0]
    needs = await asyncio.to_thread(wa, db_dsn, *args, "--set", "body.1=x")
    one_line_error(needs, "--set need the template's components")
    path = tmp_path / "t.json"
    path.write_text(
        json.dumps(next(d for d in SAMPLE_TEMPLATES if d["name"] == "sample_url_button")),
        encoding="utf-8",
    )
    offline = await asyncio.to_thread(
        wa,
        db_dsn,
        "campaign",
        "create",
        "--name",
        "f",
        "--template",
        "sample_url_button",
        "--language",
        "en_US",
        "--template-file",
        str(path),
        "--phone-number-id",
        "1",
    )
    assert offline.returncode == 0 and offline.stderr == "", offline.stderr


async def _from_catalogue(
    conn: asyncpg.Connection, mock: RunningMock, template: str, **kwargs: Any
) -> int:
    async with management_session("test-token", timeout_s=5.0) as session:
        await save_catalogue(
            conn, WABA, await fetch_templates(session, mock.base_url, "v23.0", WABA)
        )
    request = CampaignRequest(
        name=template, template=template, language="en_US", phone_number_id="1000001", **kwargs
    )
    return (await create_campaign_from_request(conn, request, WABA)).campaign_id


async def _set_status(conn: asyncpg.Connection, name: str, status: str) -> None:
    """What the next `templates sync` stores when Meta changed the template's status."""
    listing = [dict(r["document"]) for r in await conn.fetch("SELECT document FROM templates")]
    assert any(d["name"] == name for d in listing)
    await save_catalogue(
        conn, WABA, [{**d, "status": status} if d["name"] == name else d for d in listing]
    )


async def test_start_checks_the_campaign_against_the_current_catalogue(
    conn: asyncpg.Connection,
) -> None:
    async with start_mock_server() as mock:
        cid = await _from_catalogue(conn, mock, "sample_url_button")
    await _set_status(conn, "sample_url_button", "PAUSED")
    try:
        await change_campaign_state(conn, cid, CampaignCommand.START)
    except TemplateRefusedError as exc:
        assert "cannot start: template sample_url_button (en_US) is PAUSED" in str(exc)
    else:
        raise AssertionError("start was allowed")
    assert (await get_campaign(conn, cid)).state.value == "draft"
    await _set_status(conn, "sample_url_button", "APPROVED")
    await conn.execute(
        "UPDATE templates SET document = jsonb_set(document, '{components}',"
        ' \'[{"type": "BODY", "text": "Hi {{1}} and {{2}}"}]\') WHERE name = $1',
        "sample_url_button",
    )
    try:
        await change_campaign_state(conn, cid, CampaignCommand.START)
    except TemplateRefusedError as exc:
        assert "changed since the campaign was created: now takes body.2" in str(exc)
    else:
        raise AssertionError("start was allowed")


async def test_a_campaign_whose_template_was_paused_in_the_catalogue_does_not_send(
    db_dsn: str, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    async with start_mock_server(MockConfig(record_bodies=True)) as mock:
        cid = await _from_catalogue(conn, mock, "sample_body_types")
        path = tmp_path / "c.csv"
        path.write_text(
            "phone,body.1,body.2,body.3\n"
            + "".join(f"+44770010{i:04d},A,B,C\n" for i in range(50)),
            encoding="utf-8",
        )
        assert (await import_contacts(conn, cid, path)).imported == 50
        await change_campaign_state(conn, cid, CampaignCommand.START)
        await _set_status(conn, "sample_body_types", "PAUSED")  # a later `templates sync`
        async with running_daemon(daemon_config(mock.base_url), db_dsn):
            await wait_campaign_state(conn, cid, "paused")
        assert mock.state.requests == 0 and mock.state.bodies == []
    campaign = await get_campaign(conn, cid)
    assert campaign.pause_reason is not None
    assert "template sample_body_types (en_US) is PAUSED, not APPROVED" in campaign.pause_reason
    assert await state_counts(conn, cid) == {"initial": 50}


async def test_a_template_paused_while_its_campaign_sends_stops_it_within_seconds(
    db_dsn: str, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    async with start_mock_server() as mock:
        cid = await _from_catalogue(conn, mock, "sample_body_types")
        path = tmp_path / "c.csv"
        path.write_text(
            "phone,body.1,body.2,body.3\n"
            + "".join(f"+44770010{i:04d},A,B,C\n" for i in range(2000)),
            encoding="utf-8",
        )
        assert (await import_contacts(conn, cid, path)).imported == 2000
        await change_campaign_state(conn, cid, CampaignCommand.START)
        config = daemon_config(mock.base_url, sender={"rate_per_second": 100.0, "burst": 10.0})
        async with running_daemon(config, db_dsn):
            while mock.state.requests < 20:  # it is sending
                await asyncio.sleep(0.05)
            await _set_status(conn, "sample_body_types", "PAUSED")  # a `templates sync`
            await wait_campaign_state(conn, cid, "paused", timeout_s=30)
            at_pause = mock.state.requests
            await asyncio.sleep(1.0)  # 100 more would go out in a second if it still sent
            assert mock.state.requests - at_pause <= 3  # at most the sends already on the wire
    counts = await state_counts(conn, cid)
    assert counts.get("initial", 0) >= 1000  # stopped long before the end of the list
    reason = (await get_campaign(conn, cid)).pause_reason
    assert reason is not None and "is PAUSED, not APPROVED" in reason
    try:  # resuming is refused while the catalogue still says PAUSED
        await change_campaign_state(conn, cid, CampaignCommand.RESUME)
    except TemplateRefusedError as exc:
        assert "cannot resume: template sample_body_types (en_US) is PAUSED" in str(exc)
    else:
        raise AssertionError("resume was allowed")
    await _set_status(conn, "sample_body_types", "APPROVED")  # Meta approved it again
    assert (await change_campaign_state(conn, cid, CampaignCommand.RESUME)).state.value == (
        "running"
    )


async def test_sync_says_which_server_it_could_not_reach(db_dsn: str) -> None:
    async with start_mock_server() as mock:
        base_url = mock.base_url
    # The mock is gone: nothing listens there any more.
    env = {**env_for(mock), "WA_SENDER_WHATSAPP_BASE_URL": base_url}
    result = await asyncio.to_thread(wa, db_dsn, "templates", "sync", env=env)
    one_line_error(result, f"templates of WABA {WABA}: no answer from {base_url} (")
