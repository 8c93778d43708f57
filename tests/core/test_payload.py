from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from daemon.core.payload import (
    CallbackRef,
    Template,
    build_template_message,
    decode_callback_data,
    encode_body,
    encode_callback_data,
)

DATA = Path(__file__).parent / "data"
GREETING = Template(name="spring_sale", language="en_US", param_columns=("first_name", "code"))


def openapi_example() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(
        (DATA / "send_request_template_interactive_openapi.json").read_bytes()
    )
    return document


def test_template_message_with_body_parameters_in_column_order() -> None:
    body = build_template_message(
        GREETING, "33612345678", {"code": "X42", "first_name": "Anna", "extra": "?"}, "ws1:1:2:1"
    )
    assert body == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": "33612345678",
        "type": "template",
        "biz_opaque_callback_data": "ws1:1:2:1",
        "template": {
            "name": "spring_sale",
            "language": {"code": "en_US"},
            "components": [
                {
                    "type": "body",
                    "parameters": [
                        {"type": "text", "text": "Anna"},
                        {"type": "text", "text": "X42"},
                    ],
                }
            ],
        },
    }


def test_template_without_parameters_has_no_components() -> None:
    body = build_template_message(Template("hello_world", "en_US"), "1650", {}, "ws1:1:2:1")
    assert body["template"] == {"name": "hello_world", "language": {"code": "en_US"}}


def test_body_has_the_shape_of_metas_official_example() -> None:
    example = openapi_example()
    body = build_template_message(GREETING, "1650", {"first_name": "A", "code": "B"}, "ws1:1:1:1")
    assert set(body) - {"biz_opaque_callback_data"} == set(example)
    assert set(body["template"]) == set(example["template"])
    assert body["template"]["language"].keys() == example["template"]["language"].keys()
    example_body = next(c for c in example["template"]["components"] if c["type"] == "body")
    component = body["template"]["components"][0]
    assert component.keys() == example_body.keys()
    assert component["parameters"][0].keys() == example_body["parameters"][0].keys()
    assert {k: body[k] for k in ("messaging_product", "recipient_type", "type")} == {
        k: example[k] for k in ("messaging_product", "recipient_type", "type")
    }


@pytest.mark.parametrize(
    "params",
    [{}, {"first_name": "Anna"}, {"code": "X"}, {"first_name": "", "code": "X"}],
)
def test_missing_or_empty_parameter_is_a_value_error_naming_it(params: dict[str, str]) -> None:
    with pytest.raises(ValueError, match=r"template parameter '(first_name|code)' is missing"):
        build_template_message(GREETING, "1650", params, "ws1:1:1:1")


def test_callback_data_over_512_characters_is_refused() -> None:
    with pytest.raises(ValueError, match="512"):
        build_template_message(Template("t", "en"), "1650", {}, "x" * 513)


@pytest.mark.parametrize(
    "body",
    [
        {"a": 1},
        build_template_message(GREETING, "1650", {"first_name": "Zoë 😀", "code": 'q"\\'}, "c"),
    ],
)
def test_encode_body_is_compact_utf8_json_that_round_trips(body: dict[str, Any]) -> None:
    encoded = encode_body(body)
    assert json.loads(encoded) == body
    assert b", " not in encoded and b": " not in encoded
    assert encoded == json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


@pytest.mark.parametrize(
    ("campaign_id", "contact_id", "attempt", "encoded"),
    [
        (1, 2, 1, "ws1:1:2:1"),
        (42, 981, 3, "ws1:42:981:3"),
        (2**63 - 1, 2**63 - 1, 1000, f"ws1:{2**63 - 1}:{2**63 - 1}:1000"),
    ],
)
def test_callback_data_round_trips(
    campaign_id: int, contact_id: int, attempt: int, encoded: str
) -> None:
    assert encode_callback_data(campaign_id, contact_id, attempt) == encoded
    assert decode_callback_data(encoded) == CallbackRef(campaign_id, contact_id, attempt)
    assert len(encoded) <= 512


@pytest.mark.parametrize(
    "value",
    [
        "",
        "ws1",
        "ws1:1:2",
        "ws1:1:2:3:4",
        "ws2:1:2:3",
        "WS1:1:2:3",
        "ws1:a:2:3",
        "ws1:1::3",
        "ws1:-1:2:3",
        "ws1:+1:2:3",
        "ws1: 1:2:3",
        "ws1:1_000:2:3",
        "ws1:١:2:3",
        "cmp42:contact981:att1",
        "ws1:" + "9" * 600 + ":1:1",
        None,
        42,
        {"campaign": 1},
    ],
)
def test_foreign_or_garbage_callback_data_decodes_to_none(value: object) -> None:
    assert decode_callback_data(value) is None
