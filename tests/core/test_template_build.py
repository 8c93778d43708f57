"""The body builder: a template and one contact's values into Meta's `components`, compiled
once per campaign into one call per send."""

from __future__ import annotations

import cProfile
from typing import Any

import orjson
import pytest

from daemon.core.model import legacy_spec
from daemon.core.payload import Template, build_template_message, encode_body
from daemon.core.template_build import (
    MARKETING_MESSAGES,
    compile_body,
    language_dispatch,
)
from daemon.core.template_check import check_row
from daemon.core.template_spec import HeaderFile, TemplateSource, bind_template
from daemon.core.templates import parse_template
from daemon.mockapi.catalogue import SAMPLE_TEMPLATES


def spec(name: str, language: str = "en_US", **kwargs: Any) -> Any:
    document = next(d for d in SAMPLE_TEMPLATES if d["name"] == name and d["language"] == language)
    return bind_template(parse_template(document), source=TemplateSource.CATALOGUE, **kwargs)


def components(campaign: Any, row: dict[str, str], **kwargs: Any) -> list[dict[str, Any]]:
    checked = check_row(campaign, dict(row))
    assert checked.reason is None, checked.reason
    body = orjson.loads(compile_body(campaign, **kwargs)("15550001", checked.params, "ws1:1:2:1"))
    result: list[dict[str, Any]] = body["template"].get("components", [])
    return result


def text(value: str, name: str | None = None) -> dict[str, str]:
    return {"type": "text", **({"parameter_name": name} if name else {}), "text": value}


def button(sub_type: str, index: str, kind: str, value: str) -> dict[str, Any]:
    return {
        "type": "button",
        "sub_type": sub_type,
        "index": index,
        "parameters": [{"type": kind, kind: value}],
    }


CASES: list[tuple[str, dict[str, Any], dict[str, str], list[dict[str, Any]]]] = [
    (
        "sample_header_text",
        {},
        {"header.text": "Summer", "body.1": "Anna"},
        [
            {"type": "header", "parameters": [text("Summer")]},
            {"type": "body", "parameters": [text("Anna")]},
        ],
    ),
    (
        "sample_header_text_named",
        {},
        {"header.text": "Summer", "body.first_name": "Anna"},
        [
            {"type": "header", "parameters": [text("Summer", "season")]},
            {"type": "body", "parameters": [text("Anna", "first_name")]},
        ],
    ),
    (
        "sample_image",
        {},
        {"header.image.link": "https://cdn.example/a.png", "body.1": "Anna"},
        [
            {
                "type": "header",
                "parameters": [{"type": "image", "image": {"link": "https://cdn.example/a.png"}}],
            },
            {"type": "body", "parameters": [text("Anna")]},
        ],
    ),
    (
        "sample_video_named",
        {"sets": {"header.video.id": "4490709327384033"}},
        {"body.first_name": "Anna"},
        [
            {
                "type": "header",
                "parameters": [{"type": "video", "video": {"id": "4490709327384033"}}],
            },
            {"type": "body", "parameters": [text("Anna", "first_name")]},
        ],
    ),
    (
        "sample_document",
        {},
        {
            "header.document.link": "https://cdn.example/a.pdf",
            "header.document.filename": "Offer.pdf",
            "body.1": "Anna",
        },
        [
            {
                "type": "header",
                "parameters": [
                    {
                        "type": "document",
                        "document": {"link": "https://cdn.example/a.pdf", "filename": "Offer.pdf"},
                    }
                ],
            },
            {"type": "body", "parameters": [text("Anna")]},
        ],
    ),
    (
        "sample_location_named",
        {"sets": {"header.location.name": "Main store"}},
        {
            "header.location.latitude": "50.08",
            "header.location.longitude": "14.42",
            "body.first_name": "Anna",
        },
        [
            {
                "type": "header",
                "parameters": [
                    {
                        "type": "location",
                        "location": {
                            "latitude": "50.08",
                            "longitude": "14.42",
                            "name": "Main store",
                        },
                    }
                ],
            },
            {"type": "body", "parameters": [text("Anna", "first_name")]},
        ],
    ),
    (
        "sample_body_types_named",
        {"param_types": {"amount": "currency", "due_date": "date_time"}},
        {
            "body.first_name": "Anna",
            "body.amount.amount": "25",
            "body.amount.code": "USD",
            "body.amount.fallback": "$25.00",
            "body.due_date": "May 1",
        },
        [
            {
                "type": "body",
                "parameters": [
                    text("Anna", "first_name"),
                    {
                        "type": "currency",
                        "parameter_name": "amount",
                        "currency": {
                            "fallback_value": "$25.00",
                            "code": "USD",
                            "amount_1000": 25000,
                        },
                    },
                    {
                        "type": "date_time",
                        "parameter_name": "due_date",
                        "date_time": {"fallback_value": "May 1"},
                    },
                ],
            },
        ],
    ),
    (
        "sample_url_button",
        {},
        {"body.1": "Anna", "button.0.url_suffix": "o/17"},
        [
            {"type": "body", "parameters": [text("Anna")]},
            button("url", "0", "text", "o/17"),
        ],
    ),
    (
        "sample_quick_reply_named",
        {},
        {"body.first_name": "Anna", "button.1.payload": "STOP_PROMO"},
        [
            {"type": "body", "parameters": [text("Anna", "first_name")]},
            button("quick_reply", "1", "payload", "STOP_PROMO"),
        ],
    ),
    (
        "sample_copy_code",
        {},
        {"body.1": "Anna", "button.0.coupon_code": "SPRING20"},
        [
            {"type": "body", "parameters": [text("Anna")]},
            button("copy_code", "0", "coupon_code", "SPRING20"),
        ],
    ),
]


@pytest.mark.parametrize(("name", "kwargs", "row", "expected"), CASES, ids=[c[0] for c in CASES])
def test_each_component_kind_is_built_as_meta_documents_it(
    name: str, kwargs: dict[str, Any], row: dict[str, str], expected: list[dict[str, Any]]
) -> None:
    assert components(spec(name, **kwargs), row) == expected


@pytest.mark.parametrize("otp_type", ["copy_code", "one_tap", "zero_tap"])
def test_authentication_templates_send_the_code_in_the_body_and_the_button(otp_type: str) -> None:
    built = components(spec(f"sample_otp_{otp_type}"), {"body.1": "482913"})
    assert built == [
        {"type": "body", "parameters": [text("482913")]},
        button("url", "0", "text", "482913"),
    ]


def test_a_quick_reply_without_a_payload_is_left_out() -> None:
    campaign = spec("sample_quick_reply")
    assert components(campaign, {"body.1": "Anna", "button.1.payload": ""}) == [
        {"type": "body", "parameters": [text("Anna")]}
    ]


def test_a_header_file_is_sent_by_its_media_id_with_its_name() -> None:
    campaign = spec(
        "sample_document_named", header_file=HeaderFile("Brochure.pdf", "application/pdf", 9)
    )
    built = components(campaign, {"body.first_name": "Anna"}, media_id="88")
    assert built[0] == {
        "type": "header",
        "parameters": [{"type": "document", "document": {"id": "88", "filename": "Brochure.pdf"}}],
    }
    with pytest.raises(ValueError, match="no media id"):
        compile_body(campaign)


def test_legacy_campaigns_send_exactly_today_s_body() -> None:
    template = Template("spring_sale", "en_US", ("first_name", "order_id"))
    params = {"first_name": "Anna", "order_id": "A1"}
    built = compile_body(legacy_spec(template))("15550001", params, "ws1:1:2:1")
    assert built == encode_body(build_template_message(template, "15550001", params, "ws1:1:2:1"))
    no_params = Template("hello_world", "en_US")
    assert compile_body(legacy_spec(no_params))("1", {}, "c") == encode_body(
        build_template_message(no_params, "1", {}, "c")
    )


def test_the_marketing_messages_body_carries_policy_and_ttl() -> None:
    campaign = spec("sample_copy_code", product_policy="STRICT", message_send_ttl_seconds=86400)
    row = {"body.1": "Anna", "button.0.coupon_code": "SPRING20"}
    mm = orjson.loads(compile_body(campaign, endpoint=MARKETING_MESSAGES)("1", row, "c"))
    assert (mm["product_policy"], mm["message_send_ttl_seconds"]) == ("STRICT", 86400)
    cloud = orjson.loads(compile_body(campaign)("1", row, "c"))
    assert "product_policy" not in cloud and "message_send_ttl_seconds" not in cloud


def test_contacts_in_another_language_get_that_language_s_body() -> None:
    campaign = bind_template(
        parse_template(next(d for d in SAMPLE_TEMPLATES if d["name"] == "sample_header_text")),
        others=[
            parse_template(
                next(
                    d
                    for d in SAMPLE_TEMPLATES
                    if d["name"] == "sample_header_text" and d["language"] == "de_DE"
                )
            )
        ],
        source=TemplateSource.CATALOGUE,
    )
    builders = {lang: compile_body(campaign, lang) for lang in campaign.definitions}
    build = language_dispatch(builders, builders["en_US"])
    row = {"header.text": "Sommer", "body.1": "Anna"}
    assert orjson.loads(build("1", row, "c"))["template"]["language"] == {"code": "en_US"}
    german = orjson.loads(build("1", {**row, "language": "de_DE"}, "c"))
    assert german["template"]["language"] == {"code": "de_DE"}


def test_values_are_data_never_code() -> None:
    hostile = '"); import os; os._exit(1) #\\u0000'
    campaign = spec("sample_header_text_named", sets={"header.text": hostile})
    built = orjson.loads(compile_body(campaign)("1", {"body.first_name": hostile}, hostile))
    assert built["template"]["components"][0]["parameters"][0]["text"] == hostile
    assert built["template"]["components"][1]["parameters"][0]["text"] == hostile
    assert built["biz_opaque_callback_data"] == hostile


def test_a_missing_value_is_a_key_error_the_sender_turns_into_a_refusal() -> None:
    with pytest.raises(KeyError):
        compile_body(spec("sample_url_button"))("1", {"body.1": "Anna"}, "c")


def test_building_a_rich_body_is_one_python_call() -> None:
    campaign = spec("sample_rich_named", param_types={"worth": "currency", "expiry": "date_time"})
    row = check_row(
        campaign,
        {
            "header.image.link": "https://cdn.example/a.jpg",
            "body.first_name": "A",
            "body.points": "1",
            "body.worth.amount": "2",
            "body.worth.code": "EUR",
            "body.expiry": "May",
            "button.0.url_suffix": "x",
            "button.1.payload": "P",
            "button.2.coupon_code": "C",
        },
    ).params
    build = compile_body(campaign)
    profile = cProfile.Profile()
    profile.enable()
    for _ in range(100):
        build("1", row, "c")
    profile.disable()
    python_calls = sum(e.callcount for e in profile.getstats() if not isinstance(e.code, str))
    assert python_calls == 100
