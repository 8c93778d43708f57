"""The mock Cloud API, served for real on loopback and driven with aiohttp's client."""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import random
import re
import sys
import time
import tracemalloc
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from daemon.cli import mock as cli_mock
from daemon.mockapi.config import FaultConfig, MockConfig, ReceiptConfig
from daemon.mockapi.errors import error_envelope, error_spec
from daemon.mockapi.faults import FaultInjector
from daemon.mockapi.limits import SlidingWindow, ThroughputLimiter, TokenBucket
from daemon.mockapi.server import RunningMock, start_mock_server
from daemon.mockapi.state import MessageLog, WamidFactory, wa_id_of
from daemon.mockapi.validation import (
    TemplateMessageValidator,
    fast_path_valid,
    load_template_schema,
)
from daemon.whatsapp.signature import SIGNATURE_HEADER, verify
from tests.helpers.mock import PHONE_ID, TOKEN, TYPICAL

SECRET = "webhook-app-secret"
WAMID_RE = re.compile(r"^wamid\.[A-Za-z0-9+/]{40,120}={0,2}$")

# Official OpenAPI request example "Send Message Template Interactive" (copied verbatim).
INTERACTIVE_SAMPLE: dict[str, Any] = {
    "messaging_product": "whatsapp",
    "recipient_type": "individual",
    "template": {
        "components": [
            {
                "parameters": [{"image": {"link": "http(s)://the-image-url"}, "type": "image"}],
                "type": "header",
            },
            {
                "parameters": [
                    {"text": "text-string", "type": "text"},
                    {
                        "currency": {
                            "amount_1000": 100990,
                            "code": "USD",
                            "fallback_value": "$100.99",
                        },
                        "type": "currency",
                    },
                    {
                        "date_time": {
                            "calendar": "GREGORIAN",
                            "day_of_month": 25,
                            "day_of_week": 5,
                            "fallback_value": "February 25, 1977",
                            "hour": 15,
                            "minute": 33,
                            "month": 2,
                            "year": 1977,
                        },
                        "type": "date_time",
                    },
                ],
                "type": "body",
            },
            {
                "index": "0",
                "parameters": [{"payload": "aGlzIHRoaXMgaXMgY29v", "type": "payload"}],
                "sub_type": "quick_reply",
                "type": "button",
            },
            {
                "index": "1",
                "parameters": [{"payload": "9rwnB8RbYmPF5t2Mn09x4h", "type": "payload"}],
                "sub_type": "quick_reply",
                "type": "button",
            },
        ],
        "language": {"code": "language-and-locale-code"},
        "name": "template-name",
    },
    "to": "{{Recipient-Phone-Number}}",
    "type": "template",
}

# Keys of the real samples (send_success_*, status_sent_biz_opaque_callback_data_pywa.json,
# status_failed_131049_metadocs.json).
SUCCESS_KEYS = {"messaging_product", "contacts", "messages"}
WEBHOOK_VALUE_KEYS = {"messaging_product", "metadata", "contacts", "statuses"}  # contacts: user_id
SENT_STATUS_KEYS = [
    "id",
    "status",
    "timestamp",
    "recipient_id",
    "biz_opaque_callback_data",
    "conversation",
    "pricing",
]
FAILED_STATUS_KEYS = ["id", "status", "timestamp", "recipient_id", "errors"]
WEBHOOK_ERROR_KEYS = {"code", "title", "message", "error_data", "href"}


def body_to(to: str, callback: str | None = None, **changes: Any) -> dict[str, Any]:
    body = copy.deepcopy(TYPICAL)
    body["to"] = to
    if callback is None:
        body.pop("biz_opaque_callback_data")
    else:
        body["biz_opaque_callback_data"] = callback
    body.update(changes)
    return body


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as session:
        yield session


async def send(
    http: aiohttp.ClientSession,
    mock: RunningMock,
    body: Any,
    phone_number_id: str = PHONE_ID,
    **kwargs: Any,
) -> tuple[int, dict[str, Any]]:
    async with http.post(mock.messages_url(phone_number_id), json=body, **kwargs) as resp:
        return resp.status, await resp.json()


@dataclass
class Receiver:
    """A webhook endpoint on loopback recording each POST (raw body and headers)."""

    url: str = ""
    posts: list[tuple[bytes, dict[str, str]]] = field(default_factory=list)
    answers: list[int] = field(default_factory=list)

    def payloads(self) -> list[dict[str, Any]]:
        return [json.loads(raw) for raw, _ in self.posts]

    def statuses(self) -> list[dict[str, Any]]:
        return [
            status
            for payload in self.payloads()
            for entry in payload["entry"]
            for change in entry["changes"]
            for status in change["value"]["statuses"]
        ]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()

    async def webhook(request: web.Request) -> web.Response:
        rec.posts.append((await request.read(), dict(request.headers)))
        return web.Response(status=rec.answers.pop(0) if rec.answers else 200)

    app = web.Application()
    app.router.add_post("/webhook", webhook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    rec.url = f"http://127.0.0.1:{runner.addresses[0][1]}/webhook"
    yield rec
    await runner.cleanup()


def fast_receipts(url: str, **changes: Any) -> ReceiptConfig:
    base = ReceiptConfig(
        enabled=True,
        webhook_url=url,
        app_secret=SECRET,
        delivered_rate=1.0,
        read_rate=1.0,
        sent_delay_s=(0.0, 0.01),
        delivered_delay_s=(0.0, 0.01),
        read_delay_s=(0.0, 0.01),
        failed_delay_s=(0.0, 0.01),
        flush_interval_s=0.01,
        retry_initial_s=0.01,
        retry_max_s=0.02,
    )
    return replace(base, **changes)


# -- schema ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def validator() -> TemplateMessageValidator:
    return TemplateMessageValidator()


def test_packaged_schema_is_self_contained_json_schema() -> None:
    document = load_template_schema()
    assert document["$schema"].endswith("2020-12/schema")
    assert "TemplateMessage" in document["components"]["schemas"]
    refs = re.findall(r'"\$ref": "([^"]+)"', json.dumps(document))
    assert refs and all(ref.startswith("#/components/schemas/") for ref in refs)
    assert all(ref.rsplit("/", 1)[1] in document["components"]["schemas"] for ref in refs)


@pytest.mark.parametrize("body", [TYPICAL, INTERACTIVE_SAMPLE], ids=["typical", "interactive"])
def test_schema_accepts_typical_body_and_official_sample(
    validator: TemplateMessageValidator, body: dict[str, Any]
) -> None:
    assert validator.is_schema_valid(body)
    assert validator.check(body) is None


def _without(path: str) -> Callable[[dict[str, Any]], None]:
    def mutate(body: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = body
        for key in parents:
            node = node[key]
        del node[last]

    return mutate


@pytest.mark.parametrize(
    ("mutate", "code", "details"),
    [
        (_without("template.name"), 131008, "template.name is required"),
        (_without("messaging_product"), 131008, "messaging_product is required"),
        (_without("template"), 131008, "template is required"),
        (_without("to"), 131008, "to is required"),
        (_without("template.language.code"), 131008, "template.language.code is required"),
        (lambda b: b.update(type="text"), 100, "Message must be a template message."),
        (lambda b: b.update(messaging_product="sms"), 100, "must be set to whatsapp"),
        (lambda b: b.update(to=""), 100, "to"),
        (lambda b: b.update(surprise=1), 100, 'Unexpected key "surprise"'),
        (lambda b: b.update(biz_opaque_callback_data="x" * 513), 100, "biz_opaque_callback_data"),
        (lambda b: b["template"].update(name=7), 100, "template.name"),
        (
            lambda b: b["template"]["components"][0]["parameters"][0].pop("text"),
            131008,
            "parameters[0].text is required",
        ),
        (
            lambda b: b["template"]["components"][0].update(type="footer"),
            100,
            "template.components[0].type",
        ),
    ],
)
def test_schema_rejects_bad_bodies_with_graph_codes(
    validator: TemplateMessageValidator,
    mutate: Callable[[dict[str, Any]], None],
    code: int,
    details: str,
) -> None:
    body = copy.deepcopy(TYPICAL)
    mutate(body)
    problem = validator.check(body)
    assert problem is not None
    assert problem.code == code
    assert details in problem.details


def _mutations(rng: random.Random, node: Any) -> Any:
    """One random structural change somewhere in a JSON document (a deep copy)."""
    doc = copy.deepcopy(node)
    parent: Any = None
    key: Any = None
    cur = doc
    while isinstance(cur, (dict, list)) and cur and rng.random() < 0.75:
        key = rng.choice(list(cur)) if isinstance(cur, dict) else rng.randrange(len(cur))
        parent = cur
        cur = cur[key]
    weird: list[Any] = [
        None,
        0,
        1.5,
        True,
        "",
        "x" * 600,
        [],
        {},
        "text",
        "template",
        "9",
        "10",
        "body",
    ]
    action = rng.randrange(4)
    if parent is None:
        if isinstance(doc, dict):
            doc[rng.choice(["extra", "context", "type", "to"])] = rng.choice(weird)
        return doc
    if action == 0:
        del parent[key]
    elif action == 1:
        parent[key] = rng.choice(weird)
    elif action == 2 and isinstance(cur, dict):
        cur[rng.choice(["extra", "type", "text", "id", "link", "policy"])] = rng.choice(weird)
    else:
        parent[key] = copy.deepcopy(rng.choice([TYPICAL, INTERACTIVE_SAMPLE["template"], "x"]))
    return doc


def test_fast_path_never_accepts_a_body_the_schema_rejects(
    validator: TemplateMessageValidator,
) -> None:
    rng = random.Random(7)
    bases = [TYPICAL, INTERACTIVE_SAMPLE]
    assert all(fast_path_valid(body) for body in bases)
    fast_accepted = 0
    for _ in range(4000):
        body = _mutations(rng, rng.choice(bases))
        for _ in range(rng.randrange(3)):
            body = _mutations(rng, body)
        if fast_path_valid(body):
            fast_accepted += 1
            assert validator.is_schema_valid(body), body
    assert fast_accepted > 100  # the fuzzing did exercise the fast path


# -- the send endpoint ----------------------------------------------------------------------


async def test_success_response_has_the_real_shape(http: aiohttp.ClientSession) -> None:
    async with start_mock_server() as mock:
        status, payload = await send(http, mock, body_to("+1-631-555-5555", "c:1"))
    assert status == 200
    assert set(payload) == SUCCESS_KEYS
    assert payload["messaging_product"] == "whatsapp"
    assert payload["contacts"] == [{"input": "+1-631-555-5555", "wa_id": "16315555555"}]
    (message,) = payload["messages"]
    assert set(message) == {"id", "message_status"}
    assert message["message_status"] == "accepted"
    assert WAMID_RE.match(message["id"])
    assert 48 <= len(message["id"]) <= 128


async def test_wamids_are_unique_and_recorded(http: aiohttp.ClientSession) -> None:
    async with start_mock_server() as mock:
        results = await asyncio.gather(
            *(send(http, mock, body_to(f"1650555{i:04d}", f"c:{i}")) for i in range(150))
        )
        wamids = [payload["messages"][0]["id"] for _, payload in results]
        assert len(set(wamids)) == 150
        accepted = mock.state.accepted
        assert len(accepted) == 150
        assert {m.wamid for m in accepted} == set(wamids)
        found = accepted.find(wamids[17])
        assert found is not None and found.wamid == wamids[17]
        assert found.phone_number_id == PHONE_ID and found.template == "spring_sale"
        assert mock.state.count_by_callback_data() == Counter({f"c:{i}": 1 for i in range(150)})
        assert mock.state.duplicated_callback_data() == {}


@pytest.mark.parametrize(
    ("mutate", "code"),
    [
        (_without("template.name"), 131008),
        (_without("messaging_product"), 131008),
        (lambda b: b.update(type="text"), 100),
        (lambda b: b.update(unknown_field=True), 100),
    ],
)
async def test_invalid_bodies_get_http_400_and_the_graph_envelope(
    http: aiohttp.ClientSession, mutate: Callable[[dict[str, Any]], None], code: int
) -> None:
    body = copy.deepcopy(TYPICAL)
    mutate(body)
    async with start_mock_server() as mock:
        status, payload = await send(http, mock, body)
        assert mock.state.outcomes["invalid"] == 1
        assert len(mock.state.accepted) == 0
    assert status == 400
    error = payload["error"]
    assert list(error) == ["message", "type", "code", "error_data", "fbtrace_id"]
    assert error["code"] == code
    assert error["message"] == f"(#{code}) {error_spec(code).title}"
    assert error["type"] == "OAuthException"
    assert error["error_data"]["messaging_product"] == "whatsapp"
    assert error["error_data"]["details"]


async def test_unparsable_json_is_code_100(http: aiohttp.ClientSession) -> None:
    async with (
        start_mock_server() as mock,
        http.post(mock.messages_url(PHONE_ID), data=b'{"messaging_product": "whats') as resp,
    ):
        assert resp.status == 400
        assert (await resp.json())["error"]["code"] == 100


@pytest.mark.parametrize("authorization", [None, "Bearer wrong", "test-token", "Basic dGVzdA=="])
async def test_bad_or_missing_token_is_401_code_190(authorization: str | None) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    async with start_mock_server() as mock, aiohttp.ClientSession(headers=headers) as session:
        async with session.post(mock.messages_url(PHONE_ID), json=TYPICAL) as resp:
            assert resp.status == 401
            error = (await resp.json())["error"]
        assert mock.state.errors_by_code[190] == 1
    assert error["code"] == 190
    assert error["type"] == "OAuthException"
    assert error["fbtrace_id"]


async def test_configured_token_and_access_token_query_are_accepted() -> None:
    async with (
        start_mock_server(MockConfig(token="s3")) as mock,
        aiohttp.ClientSession() as session,
    ):
        url = mock.messages_url(PHONE_ID)
        async with session.post(url, json=TYPICAL, headers={"Authorization": "Bearer s3"}) as r:
            assert r.status == 200
        async with session.post(url + "?access_token=s3", json=TYPICAL) as r:
            assert r.status == 200


async def test_validation_can_be_disabled(http: aiohttp.ClientSession) -> None:
    loose = {"to": "123", "type": "text", "text": {"body": "hi"}}
    async with start_mock_server(MockConfig(validate=False)) as mock:
        status, payload = await send(http, mock, loose)
        assert status == 200
        assert payload["contacts"][0]["wa_id"] == "123"
        status, payload = await send(http, mock, {"type": "template"})
        assert status == 400 and payload["error"]["code"] == 131008


async def test_parameter_count_and_unknown_template_errors(http: aiohttp.ClientSession) -> None:
    config = MockConfig(
        template_param_counts={"spring_sale": 2}, known_templates=frozenset({"spring_sale"})
    )
    async with start_mock_server(config) as mock:
        status, payload = await send(http, mock, TYPICAL)
        assert (status, payload["error"]["code"]) == (400, 132000)
        assert "(1)" in payload["error"]["error_data"]["details"]
        other = copy.deepcopy(TYPICAL)
        other["template"]["name"] = "winter_sale"
        status, payload = await send(http, mock, other)
        assert (status, payload["error"]["code"]) == (400, 132001)
        good = copy.deepcopy(TYPICAL)
        good["template"]["components"][0]["parameters"].append({"type": "text", "text": "B"})
        status, _ = await send(http, mock, good)
        assert status == 200


async def test_healthz(http: aiohttp.ClientSession) -> None:
    async with start_mock_server() as mock, http.get(mock.base_url + "/healthz") as resp:
        assert resp.status == 200
        assert await resp.json() == {"status": "ok"}


# -- error catalogue ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "http_status"),
    [
        (130429, 429),
        (131000, 500),
        (1, 500),
        (2, 503),
        (131016, 503),
        (133004, 503),
        (190, 401),
        (131026, 400),
        (131042, 400),
        (132001, 400),
        (368, 400),
        (999999, 400),
    ],
)
def test_http_status_per_error_code(code: int, http_status: int) -> None:
    assert error_spec(code).http_status == http_status


def test_rate_limit_envelope_matches_the_meta_sample() -> None:
    envelope = error_envelope(130429, "Az8or2yhqkZfEZ-_4Qn_Bam")
    assert envelope == {
        "error": {
            "message": "(#130429) Rate limit hit",
            "type": "OAuthException",
            "code": 130429,
            "error_data": {
                "messaging_product": "whatsapp",
                "details": "Cloud API message throughput has been reached.",
            },
            "error_subcode": 2494055,
            "fbtrace_id": "Az8or2yhqkZfEZ-_4Qn_Bam",
        }
    }


# -- throughput limit -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        ([0.0, 0.0, 0.0, 0.0], [True, True, True, False]),
        ([0.0, 0.0, 0.0, 0.34], [True, True, True, True]),
        ([0.0, 0.0, 0.0, 0.2, 0.34], [True, True, True, False, True]),
    ],
)
def test_token_bucket_refills_at_rate(events: list[float], expected: list[bool]) -> None:
    bucket = TokenBucket(rate=3.0, burst=3.0, now=0.0)
    assert [bucket.try_take(t) for t in events] == expected


def test_sliding_window_allows_limit_per_trailing_second() -> None:
    window = SlidingWindow(limit=2)
    assert [window.try_take(t) for t in (0.0, 0.5, 0.9, 1.0, 1.4, 1.5)] == [
        True,
        True,
        False,
        True,
        False,
        True,
    ]


def test_unlimited_limiter_never_refuses() -> None:
    limiter = ThroughputLimiter(None)
    assert limiter.unlimited and all(limiter.allow("x", 0.0) for _ in range(10_000))


@pytest.mark.parametrize("mode", ["token_bucket", "sliding_window"])
async def test_limit_answers_429_over_the_limit_separately_per_number(
    http: aiohttp.ClientSession, mode: Any
) -> None:
    config = MockConfig(limit_per_second=5, limit_mode=mode)
    async with start_mock_server(config) as mock:
        first = [await send(http, mock, TYPICAL, "111") for _ in range(8)]
        other = [await send(http, mock, TYPICAL, "222") for _ in range(5)]
        assert mock.state.outcomes["rate_limited"] == 3
    assert [status for status, _ in first] == [200] * 5 + [429] * 3
    assert [status for status, _ in other] == [200] * 5
    error = first[-1][1]["error"]
    assert error["code"] == 130429
    assert error["message"] == "(#130429) Rate limit hit"
    assert error["error_data"]["details"] == "Cloud API message throughput has been reached."


# -- faults ---------------------------------------------------------------------------------


def test_fault_draws_are_reproducible_with_a_seed() -> None:
    config = FaultConfig(transient_rate=0.2, permanent_rate=0.1, drop_rate=0.05)

    def run() -> list[Any]:
        faults = FaultInjector(config, random.Random(42))
        return [faults.draw() for _ in range(200)]

    assert run() == run()


def test_fault_rates_must_be_probabilities_adding_up_to_one() -> None:
    with pytest.raises(ValueError):
        FaultConfig(transient_rate=1.5)
    with pytest.raises(ValueError):
        FaultConfig(transient_rate=0.6, fatal_rate=0.6)
    with pytest.raises(ValueError):
        ReceiptConfig(enabled=True)


async def test_fault_rates_are_roughly_honoured(http: aiohttp.ClientSession) -> None:
    faults = FaultConfig(
        transient_rate=0.2,
        permanent_rate=0.1,
        fatal_rate=0.1,
        fatal_codes=(131042,),
        permanent_codes=(131026,),
    )
    n = 600
    async with start_mock_server(MockConfig(seed=3, faults=faults)) as mock:
        results = await asyncio.gather(*(send(http, mock, TYPICAL) for _ in range(n)))
        outcomes = mock.state.outcomes
        assert (
            outcomes["transient"]
            + outcomes["permanent"]
            + outcomes["fatal"]
            + len(mock.state.accepted)
            == n
        )
    by_code = Counter(
        payload["error"]["code"] if "error" in payload else 0 for _, payload in results
    )
    assert abs(by_code[0] / n - 0.6) < 0.08
    assert abs(by_code[131026] / n - 0.1) < 0.05
    assert abs(by_code[131042] / n - 0.1) < 0.05
    transient = sum(by_code[c] for c in (1, 2, 131000, 131016, 133004))
    assert abs(transient / n - 0.2) < 0.06
    for status, payload in results:
        if "error" in payload:
            assert status == error_spec(payload["error"]["code"]).http_status
            assert status in (400, 500, 503)


async def test_latency_is_injected(http: aiohttp.ClientSession) -> None:
    config = MockConfig(faults=FaultConfig(latency_ms=60, jitter_ms=20))
    async with start_mock_server(config) as mock:
        started = time.perf_counter()
        status, _ = await send(http, mock, TYPICAL)
        elapsed = time.perf_counter() - started
    assert status == 200 and 0.06 <= elapsed < 0.5


async def test_dropped_connection_closes_without_an_answer(http: aiohttp.ClientSession) -> None:
    async with start_mock_server(MockConfig(faults=FaultConfig(drop_rate=1.0))) as mock:
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await send(http, mock, TYPICAL)
        assert mock.state.outcomes["drop"] == 1
        assert len(mock.state.accepted) == 0


async def test_timeout_holds_the_request_past_the_client_timeout(
    http: aiohttp.ClientSession,
) -> None:
    config = MockConfig(faults=FaultConfig(timeout_rate=1.0, hang_s=5.0))
    async with start_mock_server(config) as mock:
        started = time.perf_counter()
        with pytest.raises(TimeoutError):
            await send(http, mock, TYPICAL, timeout=aiohttp.ClientTimeout(total=0.2))
        assert mock.state.outcomes["timeout"] == 1
    # Shutting the mock down released the held request instead of waiting 5 s.
    assert time.perf_counter() - started < 2.0


async def test_timeout_ends_with_a_closed_connection_after_hang_s(
    http: aiohttp.ClientSession,
) -> None:
    config = MockConfig(faults=FaultConfig(timeout_rate=1.0, hang_s=0.15))
    async with start_mock_server(config) as mock:
        started = time.perf_counter()
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await send(http, mock, TYPICAL)
        assert time.perf_counter() - started >= 0.15


async def test_lost_response_still_accepts_the_message(http: aiohttp.ClientSession) -> None:
    faults = FaultConfig(drop_rate=1.0, lost_response_accept_rate=1.0)
    async with start_mock_server(MockConfig(faults=faults)) as mock:
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await send(http, mock, body_to("1555", "c:lost"))
        assert mock.state.count_by_callback_data() == {"c:lost": 1}
        assert mock.state.outcomes["lost_responses"] == 1


# -- deterministic triggers and control -----------------------------------------------------


async def test_forced_error_per_recipient(http: aiohttp.ClientSession) -> None:
    config = MockConfig(faults=FaultConfig(forced_errors={"15550001": 131026}))
    async with start_mock_server(config) as mock:
        status, payload = await send(http, mock, body_to("15550001"))
        assert (status, payload["error"]["code"]) == (400, 131026)
        status, _ = await send(http, mock, body_to("15550002"))
        assert status == 200


async def test_control_switch_fails_every_request_until_cleared(
    http: aiohttp.ClientSession,
) -> None:
    async with start_mock_server() as mock:
        control = mock.base_url + "/_mock/control"
        assert (await send(http, mock, TYPICAL))[0] == 200
        async with http.post(control, json={"fail_all": 131042}) as resp:
            assert resp.status == 200
            assert (await resp.json())["fail_all"] == 131042
        status, payload = await send(http, mock, TYPICAL)
        assert (status, payload["error"]["code"]) == (400, 131042)
        async with http.post(control, json={"fail_all": 190}) as resp:
            assert resp.status == 200
        status, payload = await send(http, mock, TYPICAL)
        assert (status, payload["error"]["code"]) == (401, 190)
        async with http.post(control, json={"force_errors": {"1999": 130472}}) as resp:
            assert resp.status == 200
        async with http.post(control, json={"fail_all": None}) as resp:
            assert resp.status == 200
        assert (await send(http, mock, TYPICAL))[0] == 200
        assert (await send(http, mock, body_to("1999")))[1]["error"]["code"] == 130472
        async with http.post(control, json={"fail_all": "soon"}) as resp:
            assert resp.status == 400
        async with http.post(control, json={"clear_forced": True}) as resp:
            assert (await resp.json())["force_errors"] == {}
        mock.state.set_fail_all(131000)
        assert (await send(http, mock, TYPICAL))[0] == 500


# -- accounting endpoints -------------------------------------------------------------------


async def test_stats_and_messages_endpoints(http: aiohttp.ClientSession) -> None:
    async with start_mock_server(MockConfig(limit_per_second=3)) as mock:
        for i in range(4):
            await send(http, mock, body_to(f"1650{i}", f"cb-{i}"))
        async with http.get(mock.base_url + "/_mock/stats") as resp:
            stats = await resp.json()
        async with http.get(mock.base_url + "/_mock/messages") as resp:
            messages = await resp.json()
        async with http.get(mock.base_url + "/_mock/messages?format=ndjson&since=1") as resp:
            assert resp.headers["Content-Type"].startswith("application/x-ndjson")
            lines = [json.loads(line) for line in (await resp.text()).splitlines()]
        async with http.get(mock.base_url + "/_mock/messages?since=1&limit=1") as resp:
            window = await resp.json()
    assert stats["requests"] == 4 and stats["accepted"] == 3
    assert stats["outcomes"]["rate_limited"] == 1
    assert stats["errors_by_code"] == {"130429": 1}
    assert sum(n for _, n in stats["accepted_per_second"]) == 3
    assert stats["accepted_by_phone_number_id"] == {PHONE_ID: 3}
    assert stats["pending"] == 0
    assert [m["biz_opaque_callback_data"] for m in messages] == ["cb-0", "cb-1", "cb-2"]
    assert {"wamid", "phone_number_id", "to", "template", "accepted_at"} <= set(messages[0])
    assert lines == messages[1:]
    assert window == messages[1:2]


def test_message_log_stays_small_for_many_messages() -> None:
    n = 20_000
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        log = MessageLog(WamidFactory(1))
        for i in range(n):
            log.append(PHONE_ID, f"4915{i:09d}", f"c:{i}:1", "spring_sale", 1.7e9 + i, float(i))
        per_message = (tracemalloc.get_traced_memory()[0] - before) / n
    finally:
        tracemalloc.stop()
    assert per_message < 200  # 500,000 messages stay under ~100 MB
    assert log[-1].biz_opaque_callback_data == f"c:{n - 1}:1"


def test_wamid_encodes_recipient_and_sequence() -> None:
    factory = WamidFactory(0xABCDEF01)
    wamid = factory.make(wa_id_of("+49 151 2345678"), 123456)
    assert WAMID_RE.match(wamid)
    assert factory.seq_of(wamid) == 123456
    assert WamidFactory(1).seq_of(wamid) is None
    assert factory.seq_of("wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBJCOTY3NDc0NDFDRUI3NTA0Q0UA") is None


# -- receipts -------------------------------------------------------------------------------


async def test_receipts_are_signed_and_shaped_like_meta_webhooks(
    http: aiohttp.ClientSession, receiver: Receiver
) -> None:
    config = MockConfig(receipts=fast_receipts(receiver.url))
    async with start_mock_server(config) as mock:
        _, first = await send(http, mock, body_to("+1 650 555 0001", "Zoë ✓ c:1"))
        _, second = await send(http, mock, body_to("16505550002"))
        async with asyncio.timeout(5):
            await mock.receipts.drain()
        assert mock.receipts.stats()["acknowledged"] == 6
    for raw, headers in receiver.posts:
        assert verify(raw, headers[SIGNATURE_HEADER], SECRET)
        assert raw.isascii()
        assert headers["Content-Type"] == "application/json"
    assert b"Zo\\u00eb \\u2713 c:1" in b"".join(raw for raw, _ in receiver.posts)
    for payload in receiver.payloads():
        assert payload["object"] == "whatsapp_business_account"
        for entry in payload["entry"]:
            assert entry["id"] == ReceiptConfig.waba_id
            for change in entry["changes"]:
                assert change["field"] == "messages"
                assert set(change["value"]) == WEBHOOK_VALUE_KEYS
                assert change["value"]["messaging_product"] == "whatsapp"
                assert change["value"]["metadata"] == {
                    "display_phone_number": ReceiptConfig.display_phone_number,
                    "phone_number_id": PHONE_ID,
                }
    statuses = receiver.statuses()
    wamid1 = first["messages"][0]["id"]
    wamid2 = second["messages"][0]["id"]
    mine = {(s["id"], s["status"]): s for s in statuses}
    assert len(statuses) == 6 and len(mine) == 6
    sent = mine[wamid1, "sent"]
    assert list(sent) == SENT_STATUS_KEYS
    assert sent["recipient_id"] == "16505550001"
    assert sent["biz_opaque_callback_data"] == "Zoë ✓ c:1"
    assert sent["timestamp"].isdigit()
    assert set(sent["conversation"]) == {"id", "expiration_timestamp", "origin"}
    assert set(sent["pricing"]) == {"billable", "pricing_model", "type", "category"}
    assert "biz_opaque_callback_data" not in mine[wamid2, "sent"]
    assert "expiration_timestamp" not in mine[wamid1, "delivered"]["conversation"]
    assert "conversation" not in mine[wamid1, "read"]
    assert mine[wamid1, "read"]["biz_opaque_callback_data"] == "Zoë ✓ c:1"


async def test_failed_receipts_carry_the_webhook_error_object(
    http: aiohttp.ClientSession, receiver: Receiver
) -> None:
    receipts = fast_receipts(receiver.url, failed_rate=1.0, failed_codes=(131050,))
    async with start_mock_server(MockConfig(receipts=receipts)) as mock:
        await send(http, mock, body_to("16505550003", "c:3"))
        async with asyncio.timeout(5):
            await mock.receipts.drain()
    (status,) = receiver.statuses()
    assert list(status) == [*FAILED_STATUS_KEYS[:4], "biz_opaque_callback_data", "errors"]
    assert status["status"] == "failed"
    (error,) = status["errors"]
    assert set(error) == WEBHOOK_ERROR_KEYS
    assert error["code"] == 131050
    assert error["title"] == error["message"]
    assert error["error_data"]["details"]


async def test_receipts_duplicates_and_reordering(
    http: aiohttp.ClientSession, receiver: Receiver
) -> None:
    receipts = fast_receipts(
        receiver.url,
        sent_delay_s=(0.03, 0.03),
        delivered_delay_s=(0.03, 0.03),
        read_delay_s=(0.03, 0.03),
        duplicate_rate=1.0,
        duplicate_delay_s=(0.0, 0.01),
        reorder_rate=1.0,
        post_concurrency=1,
    )
    async with start_mock_server(MockConfig(seed=5, receipts=receipts)) as mock:
        for i in range(5):
            await send(http, mock, body_to(f"1650555100{i}", f"c:{i}"))
        async with asyncio.timeout(5):
            await mock.receipts.drain()
        stats = mock.receipts.stats()
    statuses = receiver.statuses()
    assert stats["duplicates"] == 15 and stats["reordered"] == 5
    assert len(statuses) == 30
    counts = Counter((s["id"], s["status"]) for s in statuses)
    assert set(counts.values()) == {2}
    rank = {"sent": 0, "delivered": 1, "read": 2}
    for wamid in {s["id"] for s in statuses}:
        arrival = [s for s in statuses if s["id"] == wamid]
        firsts = list(dict.fromkeys(s["status"] for s in arrival))
        assert firsts != ["sent", "delivered", "read"]  # one adjacent pair was swapped
        stamps = {s["status"]: int(s["timestamp"]) for s in arrival}
        logical = [stamps[kind] for kind in sorted(stamps, key=rank.__getitem__)]
        assert logical == sorted(logical)  # timestamps keep the event order


async def test_receipt_posts_are_retried_then_given_up(
    http: aiohttp.ClientSession, receiver: Receiver
) -> None:
    receiver.answers = [500, 503]
    receipts = fast_receipts(receiver.url, delivered_rate=0.0, max_attempts=3, batch_size=10)
    async with start_mock_server(MockConfig(receipts=receipts)) as mock:
        await send(http, mock, body_to("16505550004"))
        async with asyncio.timeout(5):
            await mock.receipts.drain()
        assert mock.receipts.stats()["failed_posts"] == 2
        assert mock.receipts.stats()["acknowledged"] == 1
        assert len(receiver.posts) == 3
        assert receiver.posts[0][0] == receiver.posts[2][0]

        receiver.answers = [500] * 3
        await send(http, mock, body_to("16505550005"))
        async with asyncio.timeout(5):
            await mock.receipts.drain()
        stats = mock.receipts.stats()
        assert stats["dropped"] == 1 and stats["pending"] == 0


async def test_statuses_due_within_a_window_go_in_posts_of_batch_size_when_it_closes(
    http: aiohttp.ClientSession, receiver: Receiver
) -> None:
    """The scheduler sleeps until the window closes: a few wake-ups, not one per status."""
    receipts = fast_receipts(
        receiver.url,
        delivered_rate=0.0,
        sent_delay_s=(0.0, 0.05),
        flush_interval_s=0.2,
        batch_size=10,
    )
    async with start_mock_server(MockConfig(receipts=receipts)) as mock:
        await asyncio.gather(*(send(http, mock, body_to(f"16505552{n:03d}")) for n in range(25)))
        async with asyncio.timeout(5):
            await mock.receipts.drain()
        wakeups = mock.receipts.wakeups
    sizes = sorted(
        len(change["value"]["statuses"])
        for payload in receiver.payloads()
        for entry in payload["entry"]
        for change in entry["changes"]
    )
    assert sum(sizes) == 25 and max(sizes) <= 10
    assert len(sizes) <= 4  # one window, maybe two: its batches of 10 and what is left
    assert wakeups <= 12, wakeups


async def test_one_post_can_hold_several_entries_and_changes(
    http: aiohttp.ClientSession, receiver: Receiver
) -> None:
    receipts = fast_receipts(
        receiver.url,
        delivered_rate=0.0,
        sent_delay_s=(0.02, 0.02),
        split_rate=1.0,
        flush_interval_s=0.05,
    )
    async with start_mock_server(MockConfig(receipts=receipts)) as mock:
        await asyncio.gather(
            send(http, mock, body_to("1650555201"), "111"),
            send(http, mock, body_to("1650555202"), "222"),
            send(http, mock, body_to("1650555203"), "222"),
        )
        async with asyncio.timeout(5):
            await mock.receipts.drain()
    (payload,) = receiver.payloads()
    assert len(payload["entry"]) == 3
    phone_ids = [e["changes"][0]["value"]["metadata"]["phone_number_id"] for e in payload["entry"]]
    assert sorted(phone_ids) == ["111", "222", "222"]


async def test_receipts_pending_is_exposed_in_stats(
    http: aiohttp.ClientSession, receiver: Receiver
) -> None:
    receipts = fast_receipts(receiver.url, sent_delay_s=(0.2, 0.2), delivered_rate=0.0)
    async with start_mock_server(MockConfig(receipts=receipts)) as mock:
        await send(http, mock, TYPICAL)
        async with http.get(mock.base_url + "/_mock/stats") as resp:
            assert (await resp.json())["pending"] == 1
        async with asyncio.timeout(5):
            await mock.receipts.drain()
        async with http.get(mock.base_url + "/_mock/stats") as resp:
            stats = await resp.json()
    assert stats["pending"] == 0
    assert stats["receipts"]["generated"] == stats["receipts"]["acknowledged"] == 1


# -- CLI ------------------------------------------------------------------------------------


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli_mock.add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["mock-api", *argv])


def test_cli_flags_build_the_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(cli_mock.APP_SECRET_ENV, "from-env")
    args = _parse(
        "--port",
        "0",
        "--limit",
        "80",
        "--error-rate",
        "0.1",
        "--fatal-rate",
        "0.01",
        "--timeout-rate",
        "0.02",
        "--drop-rate",
        "0.03",
        "--latency-ms",
        "5",
        "--receipts",
        "--webhook-url",
        "http://127.0.0.1:9/webhook",
        "--failed-rate",
        "0.05",
        "--reorder-rate",
        "0.1",
        "--read-delay",
        "0.5,2",
        "--seed",
        "9",
        "--no-validate",
        "--force-error",
        "15550001=131026",
        "--expect-params",
        "spring_sale=2",
    )
    config = cli_mock.config_from_args(args)
    assert args.func is cli_mock.run
    assert config.limit_per_second == 80 and config.seed == 9 and not config.validate
    assert config.faults.transient_rate == 0.1 and config.faults.fatal_rate == 0.01
    assert config.faults.forced_errors == {"15550001": 131026}
    assert config.template_param_counts == {"spring_sale": 2}
    assert config.receipts.enabled and config.receipts.app_secret == "from-env"
    assert config.receipts.read_delay_s == (0.5, 2.0)
    assert "from-env" not in repr(config)


def test_cli_rejects_contradicting_flags(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_mock.run(_parse("--receipts")) == 2
    assert "webhook_url" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        _parse("--error-rate", "2")


@pytest.mark.parametrize(("choice", "module"), [("auto", "uvloop"), ("asyncio", "asyncio")])
def test_cli_serves_on_the_chosen_event_loop(
    monkeypatch: pytest.MonkeyPatch, choice: str, module: str
) -> None:
    loops: list[str] = []

    async def serve(*args: object, **kwargs: object) -> None:
        loops.append(type(asyncio.get_running_loop()).__module__)

    monkeypatch.setattr(cli_mock, "run_mock_server", serve)
    assert cli_mock.run(_parse("--port", "0", "--event-loop", choice)) == 0
    assert loops[0].split(".")[0] == module


def test_cli_without_uvloop_says_so_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop -> ImportError
    assert cli_mock.run(_parse("--port", "0", "--event-loop", "uvloop")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "uvloop is not installed" in err


async def test_drain_raises_when_a_receipt_task_crashed(
    http: aiohttp.ClientSession, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: object, batch: object) -> bytes:
        raise RuntimeError("boom")

    monkeypatch.setattr("daemon.mockapi.receipts.ReceiptSender.encode", broken)
    receipts = fast_receipts(receiver.url, delivered_rate=0.0, post_concurrency=1)
    async with start_mock_server(MockConfig(receipts=receipts)) as mock:
        await send(http, mock, TYPICAL)
        with pytest.raises(RuntimeError, match="crashed"):
            async with asyncio.timeout(5):
                await mock.receipts.drain()
