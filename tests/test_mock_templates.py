"""The mock's templates: its catalogue endpoint, media upload, the Marketing Messages API, and
its refusals, with Meta's envelopes, of a body that does not fit the template it names."""

from __future__ import annotations

import copy
import json
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import orjson
import pytest

from daemon.config import Secret
from daemon.core.payload import Template
from daemon.core.states import CampaignCommand
from daemon.core.template_build import compile_body
from daemon.core.template_check import check_row
from daemon.core.template_spec import TemplateSource, bind_template
from daemon.core.templates import parse_template
from daemon.db.campaigns import change_campaign_state, create_campaign
from daemon.db.importer import import_contacts
from daemon.engine.ports import free_port
from daemon.engine.service import default_components
from daemon.mockapi.catalogue import SAMPLE_TEMPLATES, Catalogue
from daemon.mockapi.config import MockConfig, ReceiptConfig
from daemon.mockapi.server import RunningMock, start_mock_server
from daemon.mockapi.template_check import template_problem
from daemon.mockapi.validation import TemplateMessageValidator, fast_top_valid
from tests.helpers.daemon import daemon_config, running_daemon, wait_until_final
from tests.helpers.mock import PHONE_ID, TOKEN
from tests.test_receipts_e2e import wait_receipts_settled

AUTH = {"Authorization": f"Bearer {TOKEN}"}
WABA = "102290129340398"


def definition(name: str) -> Any:
    return parse_template(next(d for d in SAMPLE_TEMPLATES if d["name"] == name))


def body_of(name: str, row: dict[str, str], **kwargs: Any) -> dict[str, Any]:
    spec = bind_template(definition(name), source=TemplateSource.CATALOGUE, **kwargs)
    params = check_row(spec, dict(row)).params
    built: dict[str, Any] = orjson.loads(compile_body(spec)("16505551234", params, "ws1:1:2:1"))
    return built


RICH_ROW = {
    "header.image.link": "https://cdn.example.com/a.jpg",
    "body.first_name": "Anna",
    "body.points": "120",
    "body.worth.amount": "12.5",
    "body.worth.code": "EUR",
    "body.expiry": "May",
    "button.0.url_suffix": "o/17",
    "button.1.payload": "STOP",
    "button.2.coupon_code": "SPRING20",
}
RICH_TYPES = {"param_types": {"worth": "currency", "expiry": "date_time"}}


def rich() -> dict[str, Any]:
    return body_of("sample_rich_named", RICH_ROW, **RICH_TYPES)


def components(body: dict[str, Any]) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = body["template"]["components"]
    return result


async def post(
    http: aiohttp.ClientSession,
    mock: RunningMock,
    body: object,
    *,
    endpoint: str = "messages",
    number: str = PHONE_ID,
) -> tuple[int, dict[str, Any]]:
    url = f"{mock.base_url}/v23.0/{number}/{endpoint}"
    async with http.post(url, json=body, headers=AUTH) as response:
        return response.status, await response.json()


@pytest.fixture
async def http() -> Any:
    async with aiohttp.ClientSession() as session:
        yield session


def _drop(path: str) -> Callable[[dict[str, Any]], None]:
    def change(body: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = body
        for key in parents:
            node = node[int(key)] if key.isdigit() else node[key]
        del node[int(last) if last.isdigit() else last]

    return change


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(body: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = body
        for key in parents:
            node = node[int(key)] if key.isdigit() else node[key]
        node[int(last) if last.isdigit() else last] = value

    return change


C = "template.components"
REFUSALS = [
    ("body parameter missing", _drop(f"{C}.1.parameters.3"), 132000, "body: number of"),
    ("header parameter missing", _drop(f"{C}.0"), 132000, "header: number of"),
    ("url button missing", _drop(f"{C}.2"), 132000, "button 0"),
    ("copy code missing", _drop(f"{C}.4"), 132000, "button 2"),
    (
        "named without parameter_name",
        _drop(f"{C}.1.parameters.0.parameter_name"),
        132012,
        "parameter_name",
    ),
    (
        "unknown parameter_name",
        _set(f"{C}.1.parameters.0.parameter_name", "surname"),
        132012,
        "parameter_name",
    ),
    (
        "video for an image header",
        _set(f"{C}.0.parameters.0", {"type": "video", "video": {"link": "https://a/b.mp4"}}),
        132012,
        "expected IMAGE, received VIDEO",
    ),
    ("quick reply sent as url", _set(f"{C}.3.sub_type", "url"), 132012, "sub_type url"),
    (
        "image in the body",
        _set(
            f"{C}.1.parameters.1",
            {"type": "image", "image": {"link": "https://a/b.jpg"}, "parameter_name": "points"},
        ),
        132012,
        "not allowed in the body",
    ),
    ("newline", _set(f"{C}.1.parameters.0.text", "two\nlines"), 132018, "new-line/tab"),
    (
        "five spaces",
        _set(f"{C}.1.parameters.3.date_time.fallback_value", "May     1"),
        132018,
        "consecutive spaces",
    ),
    (
        "unknown language",
        _set("template.language.code", "fr_FR"),
        132001,
        "does not exist in fr_FR",
    ),
    ("paused template", _set("template.name", "sample_paused"), 132015, "paused"),
]


@pytest.mark.parametrize(
    ("change", "code", "details"), [r[1:] for r in REFUSALS], ids=[r[0] for r in REFUSALS]
)
async def test_a_body_that_does_not_fit_its_template_is_refused_with_meta_s_envelope(
    http: aiohttp.ClientSession,
    change: Callable[[dict[str, Any]], None],
    code: int,
    details: str,
) -> None:
    body = rich()
    change(body)
    async with start_mock_server() as mock:
        status, payload = await post(http, mock, body)
        assert (status, payload["error"]["code"]) == (400, code), payload
        assert payload["error"]["message"].startswith(f"(#{code}) ")
        assert details in payload["error"]["error_data"]["details"]
        assert payload["error"]["fbtrace_id"]
        status, _ = await post(http, mock, rich())
        assert status == 200


async def test_unknown_names_pass_unless_the_catalogue_is_strict(
    http: aiohttp.ClientSession,
) -> None:
    body = body_of("sample_body_types", {"body.1": "a", "body.2": "b", "body.3": "c"})
    body["template"]["name"] = "not_in_the_catalogue"
    async with start_mock_server() as mock:
        assert (await post(http, mock, body))[0] == 200
    strict = MockConfig(templates=tuple(SAMPLE_TEMPLATES), strict_templates=True)
    async with start_mock_server(strict) as mock:
        status, payload = await post(http, mock, body)
        assert (status, payload["error"]["code"]) == (400, 132001)
        assert (
            "template name (not_in_the_catalogue) does not exist"
            in (payload["error"]["error_data"]["details"])
        )


async def test_a_disabled_template_is_132016_and_codes_over_15_are_refused(
    http: aiohttp.ClientSession,
) -> None:
    disabled = [
        {**d, "status": "DISABLED"} if d["name"] == "sample_rich_named" else d
        for d in SAMPLE_TEMPLATES
    ]
    async with start_mock_server(MockConfig(templates=tuple(disabled))) as mock:
        status, payload = await post(http, mock, rich())
        assert (status, payload["error"]["code"]) == (400, 132016), payload
        assert payload["error"]["message"].startswith("(#132016) ")
    long_coupon = rich()
    components(long_coupon)[4]["parameters"][0]["coupon_code"] = "C" * 16
    long_otp = body_of("sample_otp_copy_code", {"body.1": "1" * 16})
    async with start_mock_server() as mock:
        status, payload = await post(http, mock, long_coupon)  # the schema's maxLength
        assert (status, payload["error"]["code"]) == (400, 100), payload
        assert (
            "coupon_code: 'CCCCCCCCCCCCCCCC' is too long"
            in (payload["error"]["error_data"]["details"])
        )
        status, payload = await post(http, mock, long_otp)  # the template check's limit
        assert (status, payload["error"]["code"]) == (400, 131009), payload
        assert (
            "one-time password is over 15 characters" in (payload["error"]["error_data"]["details"])
        )


async def test_an_unknown_phone_number_id_is_graph_s_100_33(http: aiohttp.ClientSession) -> None:
    async with start_mock_server(MockConfig(phone_number_ids=frozenset({PHONE_ID}))) as mock:
        status, payload = await post(http, mock, rich(), number="123")
        assert status == 400
        assert payload["error"]["code"] == 100 and payload["error"]["error_subcode"] == 33
        assert payload["error"]["type"] == "GraphMethodException"
        assert "Object with ID '123' does not exist" in payload["error"]["message"]
        assert (await post(http, mock, rich()))[0] == 200


async def test_the_marketing_messages_api_takes_marketing_templates_only(
    http: aiohttp.ClientSession,
) -> None:
    async with start_mock_server() as mock:
        marketing = rich()
        marketing["product_policy"] = "STRICT"
        marketing["message_send_ttl_seconds"] = 43200
        status, payload = await post(http, mock, marketing, endpoint="marketing_messages")
        assert status == 200 and payload["messages"][0]["id"].startswith("wamid.")
        utility = body_of("sample_order_update", {"body.1": "A1"})
        status, payload = await post(http, mock, utility, endpoint="marketing_messages")
        assert (status, payload["error"]["code"]) == (400, 131055)
        assert payload["error"]["message"] == "(#131055) Method not allowed"
        text = {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": "16505551234",
            "type": "text",
            "text": {"body": "hi"},
        }
        status, payload = await post(http, mock, text, endpoint="marketing_messages")
        assert (status, payload["error"]["code"]) == (400, 100)
        assert payload["error"]["error_data"]["details"] == "Message must be a template message."
        bad_ttl = {**rich(), "message_send_ttl_seconds": 60}
        assert (await post(http, mock, bad_ttl, endpoint="marketing_messages"))[0] == 400
        assert mock.state.stats()["accepted_by_endpoint"] == {"marketing_messages": 1}


async def test_the_catalogue_is_cursor_paged_and_filtered_by_fields(
    http: aiohttp.ClientSession,
) -> None:
    async with start_mock_server() as mock:
        url = f"{mock.base_url}/v23.0/{WABA}/message_templates?fields=name,status&limit=10"
        names = []
        pages = 0
        while url:
            async with http.get(url, headers=AUTH) as response:
                assert response.status == 200
                page = await response.json()
            pages += 1
            names += [entry["name"] for entry in page["data"]]
            assert all(set(entry) == {"name", "status", "id"} for entry in page["data"])
            assert set(page["paging"]["cursors"]) == {"before", "after"}
            url = page["paging"].get("next")
        assert pages == -(-len(SAMPLE_TEMPLATES) // 10)
        assert names == [d["name"] for d in SAMPLE_TEMPLATES]
        async with http.get(f"{mock.base_url}/v23.0/{WABA}/message_templates") as response:
            assert response.status == 401
        async with http.get(f"{mock.base_url}/v23.0/42/message_templates", headers=AUTH) as r:
            payload = await r.json()
            assert (r.status, payload["error"]["code"], payload["error"]["error_subcode"]) == (
                400,
                100,
                33,
            )


async def test_media_uploads_are_counted_per_number_and_checked(
    http: aiohttp.ClientSession,
) -> None:
    def form(**fields: Any) -> aiohttp.FormData:
        data = aiohttp.FormData()
        for name, value in fields.items():
            if name == "file":
                data.add_field("file", value, filename="a.pdf", content_type="application/pdf")
            else:  # a content type makes it multipart even without a file
                data.add_field(name, value, content_type="text/plain")
        return data

    async with start_mock_server(MockConfig(phone_number_ids=frozenset({PHONE_ID}))) as mock:
        url = f"{mock.base_url}/v23.0/{PHONE_ID}/media"
        for _ in range(2):
            async with http.post(
                url,
                data=form(messaging_product="whatsapp", type="application/pdf", file=b"%PDF"),
                headers=AUTH,
            ) as response:
                assert response.status == 200
                media_id = (await response.json())["id"]
                assert media_id.isdigit()
        assert mock.state.uploads == {PHONE_ID: 2}
        assert mock.state.media[media_id].filename == "a.pdf"
        cases = [
            (url, form(type="application/pdf", file=b"%PDF"), 100),
            (url, form(messaging_product="whatsapp", type="application/pdf"), 131008),
            (url, form(messaging_product="whatsapp", type="image/png", file=b"%PDF"), 131053),
            (
                f"{mock.base_url}/v23.0/999/media",
                form(messaging_product="whatsapp", file=b"%PDF"),
                100,
            ),
        ]
        for target, data, code in cases:
            async with http.post(target, data=data, headers=AUTH) as response:
                assert response.status == 400
                assert (await response.json())["error"]["code"] == code
        assert mock.state.uploads == {PHONE_ID: 2}


def _mutations(rng: random.Random, node: Any) -> Any:
    doc = copy.deepcopy(node)
    parent: Any = None
    key: Any = None
    cur = doc
    while isinstance(cur, (dict, list)) and cur and rng.random() < 0.8:
        key = rng.choice(list(cur)) if isinstance(cur, dict) else rng.randrange(len(cur))
        parent, cur = cur, cur[key]
    weird: list[Any] = [
        None,
        0,
        7,
        True,
        "",
        "x" * 16,
        "a\tb",
        [],
        {},
        "text",
        "url",
        "0",
        "9",
        "copy_code",
        "payload",
        "first_name",
        "https://a/b.jpg",
    ]
    if parent is None:
        return doc
    action = rng.randrange(4)
    if action == 0:
        del parent[key]
    elif action == 1:
        parent[key] = rng.choice(weird)
    elif action == 2 and isinstance(cur, dict):
        cur[rng.choice(["extra", "type", "text", "parameter_name", "link", "id"])] = rng.choice(
            weird
        )
    elif isinstance(parent, list):
        parent.append(copy.deepcopy(rng.choice(parent)))
    return doc


def test_the_compiled_fit_never_accepts_what_the_full_checks_refuse() -> None:
    catalogue = Catalogue(SAMPLE_TEMPLATES)
    validator = TemplateMessageValidator()
    bases = [
        rich(),
        body_of("sample_otp_one_tap", {"body.1": "123456"}),
        body_of(
            "sample_location",
            {"header.location.latitude": "1", "header.location.longitude": "2", "body.1": "A"},
        ),
        body_of(
            "sample_document_named",
            {
                "header.document.link": "https://a/b.pdf",
                "header.document.filename": "b.pdf",
                "body.first_name": "A",
            },
        ),
        body_of("sample_header_text", {"header.text": "S", "body.1": "A"}),
    ]
    rng = random.Random(16)
    accepted = canonical = 0
    for _ in range(6000):
        body = _mutations(rng, rng.choice(bases))
        for _ in range(rng.randrange(3)):
            body = _mutations(rng, body)
        fit = catalogue.fit_for(body)
        if fit is not None and fast_top_valid(body) and fit.fits(body["template"], False):
            accepted += 1
            canonical += bool(fit._canonical and fit._canonical(body["template"], False))
            assert validator.is_schema_valid(body), body
            assert template_problem(body["template"], catalogue) is None, body
    assert accepted > 300  # the fuzzing did exercise the fit
    assert canonical > 200  # and its generated one-pass version


async def test_receipts_of_marketing_messages_arrive_the_same_way(
    db_dsn: str, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    spec = bind_template(definition("sample_copy_code"), source=TemplateSource.FILE)
    cid = await create_campaign(
        conn, "mm", Template("sample_copy_code", "en_US"), PHONE_ID, spec=spec
    )
    path = tmp_path / "c.csv"
    path.write_text(
        "phone,body.1,button.0.coupon_code\n"
        + "".join(f"+44770{i:07d},Name{i},C{i}\n" for i in range(40)),
        encoding="utf-8",
    )
    assert (await import_contacts(conn, cid, path)).imported == 40
    port = free_port()
    receipts = ReceiptConfig(
        enabled=True,
        webhook_url=f"http://127.0.0.1:{port}/webhook",
        app_secret="mm-secret",
        delivered_rate=1.0,
        read_rate=0.0,
    )
    async with start_mock_server(MockConfig(receipts=receipts)) as mock:
        config = daemon_config(
            mock.base_url,
            whatsapp={
                "app_secret": Secret("mm-secret"),
                "marketing_endpoint": "marketing_messages",
            },
            webhook={"enabled": True, "host": "127.0.0.1", "port": port},
        )
        async with running_daemon(config, db_dsn, components=default_components(config)):
            await change_campaign_state(conn, cid, CampaignCommand.START)
            assert (await wait_until_final(conn, cid)).keys() <= {"sent", "delivered"}
            started = time.monotonic()
            await mock.receipts.drain()
            await wait_receipts_settled(conn)
            assert time.monotonic() - started < 30
        assert mock.state.stats()["accepted_by_endpoint"] == {"marketing_messages": 40}
    counts = dict(
        await conn.fetch(
            "SELECT state::text, count(*) FROM contacts WHERE campaign_id = $1 GROUP BY 1", cid
        )
    )
    assert counts == {"delivered": 40}
    assert json.loads(json.dumps(counts))  # a JSON-able report


def test_the_command_line_serves_a_template_file_strictly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import argparse

    from daemon.cli import mock as cli_mock

    def parse(*argv: str) -> argparse.Namespace:
        parser = argparse.ArgumentParser()
        cli_mock.add_arguments(parser)
        parser.set_defaults(func=cli_mock.run)
        return parser.parse_args(list(argv))

    path = tmp_path / "templates.json"
    path.write_text(json.dumps({"data": [SAMPLE_TEMPLATES[0]]}), encoding="utf-8")
    config = cli_mock.config_from_args(
        parse("--templates", str(path), "--phone-number-id", "1", "--phone-number-id", "2")
    )
    assert config.templates == (SAMPLE_TEMPLATES[0],) and config.strict_templates
    assert config.phone_number_ids == frozenset({"1", "2"})
    defaults = cli_mock.config_from_args(parse())
    assert defaults.templates is None and defaults.phone_number_ids is None
    path.write_text(json.dumps([{"name": "x", "language": "en", "components": "no"}]))
    assert cli_mock.run(parse("--templates", str(path), "--port", "0")) == 2
    assert "--templates" in capsys.readouterr().err
