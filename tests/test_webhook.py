"""The status webhook: parsing (pure), and the real HTTP server on loopback storing into real
PostgreSQL: handshake, signatures over raw bytes, size and shape limits, outages."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp import web
from structlog.testing import capture_logs

from daemon.config import Config, Secret, with_overrides
from daemon.db import receipts_store as store
from daemon.db.pool import open_pool
from daemon.engine.web import DEPS_KEY, STATS_KEY, WebDeps, build_web_app, serve_web_app
from daemon.whatsapp.signature import SIGNATURE_HEADER, sign
from daemon.whatsapp.webhook import (
    SignatureCheck,
    WebhookPayloadError,
    check_signature,
    handshake_challenge,
    parse_timestamp,
    parse_webhook,
)

SECRET = "test-app-secret"
VERIFY_TOKEN = "test-verify-token"
SAMPLES = Path(__file__).parent / "data" / "receipts"


def sample(name: str) -> bytes:
    raw = (SAMPLES / name).read_bytes()
    if name.startswith("status_change_"):  # only the changes[] element: wrap it
        change = json.loads(raw)
        raw = json.dumps(
            {"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [change]}]}
        ).encode()
    return raw


def envelope(*changes: dict[str, Any], entries: int = 1) -> dict[str, Any]:
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": f"waba{i}", "changes": list(changes)} for i in range(entries)],
    }


def statuses_change(*statuses: dict[str, Any], phone_number_id: str = "1000001") -> dict[str, Any]:
    return {
        "field": "messages",
        "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550783881", "phone_number_id": phone_number_id},
            "statuses": list(statuses),
        },
    }


def status(
    wamid: str, kind: str = "delivered", ts: str = "1750030073", **extra: Any
) -> dict[str, Any]:
    return {"id": wamid, "status": kind, "timestamp": ts, "recipient_id": "16505551234", **extra}


# -- parsing (no I/O) ------------------------------------------------------------------------


@pytest.mark.parametrize("path", sorted(SAMPLES.glob("status_*.json")), ids=lambda p: p.stem)
def test_every_reference_sample_parses_into_one_receipt(path: Path) -> None:
    parsed = parse_webhook(sample(path.name))
    assert len(parsed.receipts) == 1 and parsed.ignored == []
    row = parsed.receipts[0]
    document = json.loads(sample(path.name))
    value = document["entry"][0]["changes"][0]["value"]
    original = value["statuses"][0]
    assert (row.wamid, row.status) == (original["id"], original["status"])
    assert row.status_at == datetime.fromtimestamp(int(original["timestamp"]), UTC)
    assert row.recipient_id == original["recipient_id"]
    assert row.phone_number_id == value["metadata"]["phone_number_id"]
    assert row.callback_data == original.get("biz_opaque_callback_data")
    assert row.raw == {**original, "metadata": value["metadata"]}
    if original["status"] == "failed":
        error = original["errors"][0]
        assert (row.error_code, row.error_title) == (error["code"], error["title"])
    else:
        assert (row.error_code, row.error_title) == (None, None)


def test_unknown_status_values_are_kept_as_they_are() -> None:
    (row,) = parse_webhook(sample("status_played_pywa.json")).receipts
    assert row.status == "played"
    (row,) = parse_webhook(
        json.dumps(envelope(statuses_change(status("w", "deleted")))).encode()
    ).receipts
    assert row.status == "deleted"


def test_a_batched_body_yields_every_status_of_every_entry_and_change() -> None:
    body = envelope(
        statuses_change(status("w1", "sent"), status("w2", "read")),
        statuses_change(
            status("w3", "failed", errors=[{"code": 131050, "title": "t"}]), phone_number_id="2"
        ),
        entries=2,
    )
    parsed = parse_webhook(json.dumps(body).encode())
    assert [r.wamid for r in parsed.receipts] == ["w1", "w2", "w3"] * 2
    assert [r.phone_number_id for r in parsed.receipts][:3] == ["1000001", "1000001", "2"]
    assert parsed.receipts[2].error_code == 131050


def test_unknown_fields_are_ignored_changes_and_known_ones_are_read() -> None:
    unknown = {"field": "business_capability_update", "value": {"max_daily_conversations": 1}}
    template = {
        "field": "message_template_status_update",
        "value": {
            "event": "PAUSED",
            "message_template_id": 123,
            "message_template_name": "spring_sale",
            "message_template_language": "en_US",
            "reason": "LOW_QUALITY",
        },
    }
    incoming = {
        "field": "messages",
        "value": {
            "messages": [
                {
                    "id": "wamid.in",
                    "from": "15550001",
                    "type": "text",
                    "text": {"body": "STOP"},
                    "timestamp": "1750030073",
                }
            ]
        },
    }
    parsed = parse_webhook(json.dumps(envelope(unknown, template, incoming)).encode())
    assert parsed.receipts == [] and parsed.malformed == []
    assert [c.field for c in parsed.ignored] == ["business_capability_update"]
    (event,) = parsed.template_events
    assert (event.name, event.language, event.status, event.template_id) == (
        "spring_sale",
        "en_US",
        "PAUSED",
        "123",
    )
    (message,) = parsed.inbound
    assert (message.phone, message.type, message.body) == ("15550001", "text", "STOP")


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b'{"object": ',
        b"\xff\xfe",
        b"[]",
        b"{}",
        json.dumps({"object": "whatsapp_business_account"}).encode(),
        json.dumps({"object": "whatsapp_business_account", "entry": {}}).encode(),
    ],
)
def test_bodies_that_are_not_whatsapp_webhooks_are_refused(body: bytes) -> None:
    with pytest.raises(WebhookPayloadError):
        parse_webhook(body)


def test_a_webhook_of_another_object_is_acknowledged_and_ignored() -> None:
    parsed = parse_webhook(json.dumps({"object": "page", "entry": []}).encode())
    assert parsed.empty and [c.reason for c in parsed.ignored] == ["another object"]


@pytest.mark.parametrize(
    "bad",
    [
        {"id": "1"},  # an entry without changes
        {"changes": [{"value": {}}]},
        {"changes": [{"field": "messages"}]},
        {"changes": [{"field": "messages", "value": {"statuses": {}}}]},
        {"changes": [statuses_change("not an object")]},  # type: ignore[arg-type]
        {"changes": [statuses_change({"status": "sent"})]},
        {"changes": [statuses_change({"id": "w", "status": 3})]},
        {"changes": [statuses_change({"id": "", "status": "sent"})]},
        {"changes": [statuses_change({"id": "w", "status": "sent", "x": "a\u0000b"})]},
    ],
)
def test_a_malformed_item_is_counted_and_the_good_ones_kept(bad: dict[str, object]) -> None:
    good = {"id": "9", "changes": [statuses_change(status("w-good", "delivered"))]}
    body = {"object": "whatsapp_business_account", "entry": [bad, good]}
    parsed = parse_webhook(json.dumps(body).encode())
    assert [r.wamid for r in parsed.receipts] == ["w-good"]
    assert len(parsed.malformed) == 1


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1750030073", datetime(2025, 6, 15, 23, 27, 53, tzinfo=UTC)),
        (1750030073, datetime(2025, 6, 15, 23, 27, 53, tzinfo=UTC)),
        ("", None),
        (None, None),
        ("17500x", None),
        ("-5", None),
        ("1.5", None),
        ("99999999999999999999", None),
        (True, None),
        ("١٧٥٠٠٣٠٠٧٣", None),
    ],
)
def test_timestamps_are_strings_of_epoch_seconds(value: object, expected: datetime | None) -> None:
    assert parse_timestamp(value) == expected


def test_signature_check_tells_missing_from_wrong() -> None:
    body = b'{"a":1}'
    assert check_signature(body, sign(body, SECRET), SECRET) is SignatureCheck.VALID
    assert check_signature(body, None, SECRET) is SignatureCheck.MISSING
    assert check_signature(body, "  ", SECRET) is SignatureCheck.MISSING
    assert check_signature(body, sign(body, "other"), SECRET) is SignatureCheck.INVALID
    assert check_signature(body, "garbage", SECRET) is SignatureCheck.INVALID


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (
            {
                "hub.mode": "subscribe",
                "hub.verify_token": VERIFY_TOKEN,
                "hub.challenge": "1158201444",
            },
            "1158201444",
        ),
        ({"hub.mode": "subscribe", "hub.verify_token": "wrong", "hub.challenge": "1"}, None),
        ({"hub.mode": "unsubscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1"}, None),
        ({"hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1"}, None),
        ({"hub.mode": "subscribe", "hub.challenge": "1"}, None),
        ({"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN}, None),
    ],
)
def test_handshake_answers_the_challenge_only_to_the_right_token(
    query: dict[str, str], expected: str | None
) -> None:
    assert handshake_challenge(query, VERIFY_TOKEN) == expected
    assert handshake_challenge(query, "") is None  # no token configured: never verified


# -- the HTTP server -------------------------------------------------------------------------


@dataclass
class Server:
    url: str
    app: web.Application
    session: aiohttp.ClientSession
    conn: asyncpg.Connection

    async def post(
        self, body: bytes, signature: str | None = "sign", **headers: str
    ) -> aiohttp.ClientResponse:
        if signature == "sign":
            signature = sign(body, SECRET)
        if signature is not None:
            headers[SIGNATURE_HEADER] = signature
        headers.setdefault("Content-Type", "application/json")
        async with self.session.post(self.url + "/webhook", data=body, headers=headers) as resp:
            await resp.read()
            return resp

    async def stored(self) -> list[asyncpg.Record]:
        return list(await self.conn.fetch("SELECT * FROM status_receipts ORDER BY id"))


def web_config(**webhook: Any) -> Config:
    return with_overrides(
        Config(),
        whatsapp={"app_secret": Secret(SECRET), "verify_token": Secret(VERIFY_TOKEN)},
        webhook={"enabled": True, "max_body_bytes": 64 * 1024, **webhook},
    )


@pytest.fixture
async def server(db_dsn: str, conn: asyncpg.Connection) -> AsyncIterator[Server]:
    async with open_pool(db_dsn, min_size=1, max_size=4) as pool:
        app = build_web_app(WebDeps(web_config(), pool, asyncio.Event()))
        async with serve_web_app(app, "127.0.0.1", 0) as url, aiohttp.ClientSession() as session:
            yield Server(url, app, session, conn)


async def test_handshake_right_token_gets_the_raw_challenge(server: Server) -> None:
    query = {
        "hub.mode": "subscribe",
        "hub.verify_token": VERIFY_TOKEN,
        "hub.challenge": "1158201444",
    }
    async with server.session.get(server.url + "/webhook", params=query) as resp:
        assert resp.status == 200
        assert await resp.text() == "1158201444"


async def test_handshake_wrong_token_is_forbidden(server: Server) -> None:
    query = {"hub.mode": "subscribe", "hub.verify_token": "guess", "hub.challenge": "1158201444"}
    async with server.session.get(server.url + "/webhook", params=query) as resp:
        assert resp.status == 403
        assert "1158201444" not in await resp.text()


async def test_a_signed_sample_is_stored_with_its_metadata(server: Server) -> None:
    body = sample("status_failed_131049_metadocs.json")
    resp = await server.post(body)
    assert resp.status == 200
    (row,) = await server.stored()
    assert (row["wamid"], row["status"], row["processing_state"]) == (
        "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBI0QUQ2MjA4NEYyRkExNjMyREUA",
        "failed",
        "pending",
    )
    assert row["status_at"] == datetime.fromtimestamp(1751142888, UTC)
    assert (row["phone_number_id"], row["recipient_id"]) == ("106540352242922", "16505551234")
    assert (row["error_code"], row["callback_data"]) == (131049, None)
    assert row["raw"]["metadata"]["phone_number_id"] == "106540352242922"
    assert row["raw"]["errors"][0]["error_data"]["details"].startswith("In order to maintain")
    stats = server.app[STATS_KEY]
    assert (stats.stored, stats.responses) == (1, Counter({200: 1}))


async def test_every_sample_is_accepted_and_stored(server: Server) -> None:
    names = sorted(p.name for p in SAMPLES.glob("status_*.json"))
    for name in names:
        assert (await server.post(sample(name))).status == 200, name
    stored = await server.stored()
    assert len(stored) == len(names)
    assert {r["status"] for r in stored} == {"sent", "delivered", "read", "failed", "played"}


async def test_a_batched_post_is_stored_whole(server: Server) -> None:
    body = envelope(
        statuses_change(*(status(f"w{i}", "sent") for i in range(40))),
        statuses_change(*(status(f"v{i}", "read") for i in range(30)), phone_number_id="2"),
        entries=3,
    )
    assert (await server.post(json.dumps(body).encode())).status == 200
    stored = await server.stored()
    assert len(stored) == 3 * 70
    assert sum(1 for r in stored if r["phone_number_id"] == "2") == 3 * 30


async def test_missing_signature_is_401_and_nothing_is_stored(server: Server) -> None:
    resp = await server.post(sample("status_sent_pywa.json"), signature=None)
    assert resp.status == 401
    assert await server.stored() == []


@pytest.mark.parametrize(
    "signature",
    [
        "sha256=" + "0" * 64,
        "sha1=abc",
        sign(b"another body", SECRET),
        sign(b"", SECRET),
    ],
)
async def test_wrong_signature_is_403_and_nothing_is_stored(server: Server, signature: str) -> None:
    resp = await server.post(sample("status_sent_pywa.json"), signature=signature)
    assert resp.status == 403
    assert await server.stored() == []


async def test_signature_is_checked_over_the_raw_escaped_unicode_bytes(server: Server) -> None:
    document = envelope(
        statuses_change(
            status(
                "wamid.ü",
                "failed",
                errors=[{"code": 131026, "title": "Zustellung fehlgeschlagen: äöå"}],
            )
        )
    )
    raw = json.dumps(document, ensure_ascii=True).encode()
    assert b"\\u00e4" in raw
    reserialised = json.dumps(json.loads(raw), ensure_ascii=False).encode()
    # Signed over a re-serialised form: refused, whatever we would parse from it.
    assert (await server.post(raw, signature=sign(reserialised, SECRET))).status == 403
    assert await server.stored() == []
    # Signed over the bytes exactly as posted: accepted, text decoded.
    assert (await server.post(raw, signature=sign(raw, SECRET))).status == 200
    (row,) = await server.stored()
    assert (row["wamid"], row["error_title"]) == ("wamid.ü", "Zustellung fehlgeschlagen: äöå")


async def test_an_oversized_body_is_413_by_its_length(server: Server) -> None:
    body = json.dumps(envelope(statuses_change(*(status(f"w{i}") for i in range(1000))))).encode()
    assert len(body) > 64 * 1024
    assert (await server.post(body)).status == 413
    assert await server.stored() == []


async def test_an_oversized_chunked_body_is_413_while_reading(server: Server) -> None:
    body = json.dumps(envelope(statuses_change(*(status(f"w{i}") for i in range(1000))))).encode()

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(body), 4096):
            yield body[i : i + 4096]

    headers = {SIGNATURE_HEADER: sign(body, SECRET), "Content-Type": "application/json"}
    async with server.session.post(server.url + "/webhook", data=chunks(), headers=headers) as resp:
        assert resp.status == 413
    assert await server.stored() == []


async def test_malformed_json_is_400(server: Server) -> None:
    assert (await server.post(b'{"object": "whatsapp_business_account", "entry": [')).status == 400
    assert await server.stored() == []


@pytest.mark.parametrize(
    "document",
    [{"object": "whatsapp_business_account", "entry": "x"}, [1, 2, 3], {"entry": []}],
)
async def test_a_body_that_is_not_a_whatsapp_webhook_is_400(server: Server, document: Any) -> None:
    assert (await server.post(json.dumps(document).encode())).status == 400
    assert await server.stored() == []


async def test_unknown_objects_and_fields_are_acknowledged_with_200(server: Server) -> None:
    other = {"field": "business_capability_update", "value": {"max_daily_conversations": 1}}
    with capture_logs() as logs:
        assert (await server.post(json.dumps(envelope(other)).encode())).status == 200
        page = {"object": "page", "entry": [{"id": "1", "changes": []}]}
        assert (await server.post(json.dumps(page).encode())).status == 200
    assert await server.stored() == []
    ignored = [e for e in logs if e["event"] == "webhook_change_ignored"]
    assert [e["field"] for e in ignored] == ["business_capability_update", "page"]


async def test_a_lone_malformed_status_is_acknowledged_counted_and_not_stored(
    server: Server,
) -> None:
    for bad in ({"status": "sent"}, status("wamid.nul\u0000", "sent")):
        with capture_logs() as logs:
            body = json.dumps(envelope(statuses_change(bad))).encode()
            assert (await server.post(body)).status == 200
        assert [e["count"] for e in logs if e["event"] == "webhook_items_malformed"] == [1]
    assert await server.stored() == []


async def test_one_malformed_and_99_good_statuses_are_200_and_99_stored(server: Server) -> None:
    statuses = [status(f"wamid.good{i}", "sent") for i in range(99)]
    statuses.insert(40, {"id": "wamid.bad", "status": None})
    body = json.dumps(envelope(statuses_change(*statuses))).encode()
    assert (await server.post(body)).status == 200
    assert len(await server.stored()) == 99


async def test_a_post_notifies_the_reconcilers(server: Server, db_dsn: str) -> None:
    listener = await asyncpg.connect(db_dsn)
    got: asyncio.Queue[str] = asyncio.Queue()
    try:
        await listener.add_listener(store.RECEIPTS_CHANNEL, lambda *args: got.put_nowait(args[3]))
        body = json.dumps(envelope(statuses_change(status("w1"), status("w2")))).encode()
        assert (await server.post(body)).status == 200
        assert await asyncio.wait_for(got.get(), 5) == "2"
    finally:
        await listener.close()


async def test_health_and_readiness(server: Server) -> None:
    async with server.session.get(server.url + "/healthz") as resp:
        assert resp.status == 200
    async with server.session.get(server.url + "/readyz") as resp:
        assert resp.status == 200
    deps = server.app[DEPS_KEY]
    assert deps.stopping is not None
    deps.stopping.set()
    async with server.session.get(server.url + "/readyz") as resp:
        assert resp.status == 503
    assert server.app[STATS_KEY].responses == Counter()  # no webhook POST yet


async def test_the_database_down_answers_503_so_meta_retries() -> None:
    # A pool that cannot connect (nothing listens on that port): nothing can be stored.
    async with open_pool("postgresql://postgres@127.0.0.1:9/none", min_size=0, max_size=1) as pool:
        app = build_web_app(WebDeps(web_config(), pool))
        async with serve_web_app(app, "127.0.0.1", 0) as url, aiohttp.ClientSession() as session:
            body = sample("status_sent_pywa.json")
            headers = {SIGNATURE_HEADER: sign(body, SECRET)}
            async with session.post(url + "/webhook", data=body, headers=headers) as resp:
                assert resp.status == 503
            async with session.get(url + "/readyz") as resp:
                assert resp.status == 503
            async with session.get(url + "/healthz") as resp:
                assert resp.status == 200


async def test_extra_routes_are_installed_on_the_same_server(db_dsn: str) -> None:
    async def metrics(request: web.Request) -> web.Response:
        return web.Response(text="# metrics")

    def install(app: web.Application) -> None:
        app.router.add_get("/metrics", metrics)

    async with open_pool(db_dsn, min_size=0, max_size=1) as pool:
        app = build_web_app(WebDeps(web_config(), pool, extra_routes=[install]))
        async with (
            serve_web_app(app, "127.0.0.1", 0) as url,
            aiohttp.ClientSession() as session,
            session.get(url + "/metrics") as resp,
        ):
            assert (resp.status, await resp.text()) == (200, "# metrics")


async def test_the_webhook_routes_follow_the_configured_path(db_dsn: str) -> None:
    async with open_pool(db_dsn, min_size=0, max_size=1) as pool:
        app = build_web_app(WebDeps(web_config(path="/hooks/wa"), pool))
        async with serve_web_app(app, "127.0.0.1", 0) as url, aiohttp.ClientSession() as session:
            body = sample("status_sent_pywa.json")
            headers = {SIGNATURE_HEADER: sign(body, SECRET)}
            async with session.post(url + "/hooks/wa", data=body, headers=headers) as resp:
                assert resp.status == 200
            async with session.post(url + "/webhook", data=body, headers=headers) as resp:
                assert resp.status == 404


def test_the_web_component_refuses_to_start_without_an_app_secret() -> None:
    from daemon.engine.web import check_webhook_config
    from daemon.errors import ConfigError

    with pytest.raises(ConfigError, match="app_secret"):
        check_webhook_config(with_overrides(Config(), webhook={"enabled": True}))
    check_webhook_config(with_overrides(Config(), webhook={"enabled": False}))


# -- the other fields, in the shapes of Meta's webhook reference ------------------------------


def meta_body(field: str, value: dict[str, Any], waba: str = "102290129340398") -> bytes:
    change = {"value": value, "field": field}
    entry = {"id": waba, "time": 1739321024, "changes": [change]}
    return json.dumps({"object": "whatsapp_business_account", "entry": [entry]}).encode()


METADATA = {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"}


def test_user_preferences_stop_and_resume_as_meta_documents_them() -> None:
    for value in ("stop", "resume"):
        body = meta_body(
            "user_preferences",
            {
                "messaging_product": "whatsapp",
                "metadata": METADATA,
                "contacts": [{"profile": {"name": "Sheena Nelson"}, "wa_id": "16505551234"}],
                "user_preferences": [
                    {
                        "wa_id": "16505551234",
                        "detail": f"User requested to {value} marketing messages",
                        "category": "marketing_messages",
                        "value": value,
                        "timestamp": 1731705721,
                    }
                ],
            },
        )
        (preference,) = parse_webhook(body).preferences
        assert (preference.phone, preference.value, preference.category) == (
            "16505551234",
            value,
            "marketing_messages",
        )
        assert preference.phone_number_id == "106540352242922"


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        (
            "message_template_status_update",
            {
                "event": "REJECTED",
                "message_template_id": 1689556908129832,
                "message_template_name": "order_confirmation",
                "message_template_language": "en-US",
                "reason": "INVALID_FORMAT",
                "message_template_category": "UTILITY",
            },
            ("REJECTED", None, "UTILITY", None, "INVALID_FORMAT"),
        ),
        (
            "message_template_status_update",
            {
                "event": "DISABLED",
                "message_template_id": 1689556908129832,
                "message_template_name": "order_confirmation",
                "message_template_language": "en-US",
                "reason": None,
                "disable_info": {"disable_date": "1689556908"},
            },
            ("DISABLED", None, None, None, None),
        ),
        (
            "message_template_quality_update",
            {
                "previous_quality_score": "GREEN",
                "new_quality_score": "YELLOW",
                "message_template_id": 806312974732579,
                "message_template_name": "welcome_template",
                "message_template_language": "en-US",
            },
            (None, "YELLOW", None, "GREEN", None),
        ),
        (
            "template_category_update",
            {
                "message_template_id": 278077987465474,
                "message_template_name": "welcome_template",
                "message_template_language": "en-US",
                "previous_category": "UTILITY",
                "new_category": "MARKETING",
            },
            (None, None, "MARKETING", "UTILITY", None),
        ),
        (
            "template_category_update",
            {
                "message_template_id": 278077987465474,
                "message_template_name": "welcome_template",
                "message_template_language": "en-US",
                "correct_category": "MARKETING",
                "new_category": "UTILITY",
                "category_update_timestamp": 1739321024,
            },
            (None, None, "UTILITY", None, None),
        ),
    ],
)
def test_template_events_as_meta_documents_them(
    field: str, value: dict[str, Any], expected: tuple[object, ...]
) -> None:
    parsed = parse_webhook(meta_body(field, value))
    assert parsed.malformed == [] and parsed.ignored == []
    (event,) = parsed.template_events
    assert (event.waba_id, event.name, event.template_id) == (
        "102290129340398",
        value["message_template_name"],
        str(value["message_template_id"]),
    )
    assert (event.status, event.quality, event.category, event.previous, event.reason) == expected


@pytest.mark.parametrize(
    "event", ["FLAGGED", "UNFLAGGED", "DOWNGRADE", "UPGRADE", "THROUGHPUT_UPGRADE"]
)
def test_phone_number_quality_updates_as_meta_documents_them(event: str) -> None:
    value = {
        "display_phone_number": "15550783881",
        "event": event,
        "current_limit": "TIER_10K",
        "max_daily_conversations_per_business": "10K",
    }
    (number,) = parse_webhook(meta_body("phone_number_quality_update", value)).number_events
    assert (number.display_phone_number, number.event, number.current_limit) == (
        "15550783881",
        event,
        "TIER_10K",
    )


def test_inbound_text_button_and_interactive_replies_as_meta_documents_them() -> None:
    messages = [
        {
            "from": "16505551234",
            "id": "wamid.t",
            "timestamp": "1750030073",
            "type": "text",
            "text": {"body": "STOP"},
        },
        {
            "from": "16505551234",
            "id": "wamid.b",
            "timestamp": "1750030074",
            "type": "button",
            "context": {"from": "15550783881", "id": "wamid.ours"},
            "button": {"payload": "STOP_PROMOTIONS", "text": "Stop promotions"},
        },
        {
            "from": "16505551234",
            "id": "wamid.i",
            "timestamp": "1750030075",
            "type": "interactive",
            "interactive": {"type": "button_reply", "button_reply": {"id": "yes", "title": "Yes"}},
        },
        {
            "from": "16505551234",
            "id": "wamid.u",
            "timestamp": "1750030076",
            "type": "unsupported",
            "errors": [{"code": 131051, "title": "Message type unknown"}],
        },
    ]
    body = meta_body(
        "messages",
        {
            "messaging_product": "whatsapp",
            "metadata": METADATA,
            "contacts": [
                {
                    "profile": {"name": "Kerry Fisher"},
                    "wa_id": "16505551234",
                    "user_id": "US.13491208655302741918",
                }
            ],
            "messages": messages,
        },
    )
    parsed = parse_webhook(body)
    got = [(m.wamid, m.type, m.body, m.payload, m.context_wamid) for m in parsed.inbound]
    assert got == [
        ("wamid.t", "text", "STOP", None, None),
        ("wamid.b", "button", "Stop promotions", "STOP_PROMOTIONS", "wamid.ours"),
        ("wamid.i", "interactive", "Yes", "yes", None),
        ("wamid.u", "unsupported", None, None, None),
    ]
    assert {m.user_id for m in parsed.inbound} == {"US.13491208655302741918"}


def test_statuses_keep_pricing_conversation_and_user_id_in_columns() -> None:
    (row,) = parse_webhook(sample("status_delivered_pywa.json")).receipts
    assert (row.user_id, row.pricing_category, row.pricing_model, row.pricing_billable) == (
        "US.13491208655302741918",
        "service",
        "CBP",
        True,
    )
    assert row.conversation_origin == "service"
    (row,) = parse_webhook(sample("status_sent_marketing_pmp_metadocs.json")).receipts
    assert (row.pricing_type, row.pricing_category, row.pricing_model) == (
        "regular",
        "marketing",
        "PMP",
    )
    (row,) = parse_webhook(sample("status_v24_no_conversation_no_pricing_metadocs.json")).receipts
    assert row.conversation_id is None and row.pricing_category is None
    body = json.dumps(envelope(statuses_change({"id": "wamid.x", "status": "sent"}))).encode()
    (row,) = parse_webhook(body).receipts  # no recipient_id: still a receipt (wamid)
    assert row.recipient_id is None


def test_the_webhook_reads_the_attempt_of_a_failed_131026_status_from_its_callback_data() -> None:
    def failed(callback: str | None) -> dict[str, Any]:
        status: dict[str, Any] = {
            "id": "wamid.x",
            "status": "failed",
            "timestamp": "1751142888",
            "recipient_id": "16505551234",
            "errors": [{"code": 131026, "title": "Message undeliverable"}],
        }
        if callback is not None:
            status["biz_opaque_callback_data"] = callback
        return {
            "object": "whatsapp_business_account",
            "entry": [
                {"id": "1", "changes": [{"field": "messages", "value": {"statuses": [status]}}]}
            ],
        }

    actions = [
        parse_webhook(json.dumps(failed(cb)).encode()).receipts[0].failed_action
        for cb in ("ws1:7:42:1", "ws1:7:42:2", None, "someone else's")
    ]
    assert actions == ["retry", "fail", "fail", "fail"]
