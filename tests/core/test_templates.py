"""The catalogue's template model: Meta's message_templates entries parsed into header, body,
buttons and their variables; what may be created from, and refused with one clear line."""

from __future__ import annotations

from typing import Any

import pytest

from daemon.core.templates import (
    ButtonType,
    HeaderFormat,
    OtpType,
    ParameterFormat,
    TemplateError,
    check_usable,
    find_template,
    legacy_template,
    parse_catalogue,
    parse_template,
    template_document,
    variables_in,
)
from daemon.mockapi.catalogue import SAMPLE_TEMPLATES

RICH: dict[str, Any] = {
    "name": "spring",
    "language": "en_US",
    "status": "APPROVED",
    "category": "MARKETING",
    "parameter_format": "NAMED",
    "id": "123",
    "components": [
        {"type": "HEADER", "format": "IMAGE", "example": {"header_handle": ["4::aW1h"]}},
        {
            "type": "BODY",
            "text": "Hi {{first_name}}, {{points}} points; {{first_name}} again",
            "example": {"body_text_named_params": [{"param_name": "first_name", "example": "A"}]},
        },
        {"type": "FOOTER", "text": "STOP to opt out"},
        {
            "type": "BUTTONS",
            "buttons": [
                {"type": "URL", "text": "Shop", "url": "https://shop.example/{{1}}"},
                {"type": "QUICK_REPLY", "text": "Stop"},
                {"type": "COPY_CODE", "example": "SAVE20"},
                {"type": "PHONE_NUMBER", "text": "Call", "phone_number": "+15550100"},
                {"type": "URL", "text": "Help", "url": "https://shop.example/help"},
            ],
        },
    ],
}


def test_a_named_template_parses_into_its_components_and_variables() -> None:
    template = parse_template(RICH)
    assert (template.name, template.language, template.status, template.category) == (
        "spring",
        "en_US",
        "APPROVED",
        "MARKETING",
    )
    assert template.parameter_format is ParameterFormat.NAMED and template.named
    assert template.header is not None and template.header.format is HeaderFormat.IMAGE
    assert template.body is not None and template.body.variables == ("first_name", "points")
    kinds = [(b.index, b.type, b.dynamic, b.takes_parameter) for b in template.buttons]
    assert kinds == [
        (0, ButtonType.URL, True, True),
        (1, ButtonType.QUICK_REPLY, False, True),
        (2, ButtonType.COPY_CODE, False, True),
        (3, ButtonType.PHONE_NUMBER, False, False),
        (4, ButtonType.URL, False, False),
    ]


@pytest.mark.parametrize("document", SAMPLE_TEMPLATES, ids=lambda d: f"{d['name']}-{d['language']}")
def test_every_sample_of_the_mock_parses_and_survives_a_round_trip(
    document: dict[str, Any],
) -> None:
    template = parse_template(document)
    assert parse_template(template_document(template)) == template


@pytest.mark.parametrize(
    ("text", "parameter_format", "expected"),
    [
        ("Hi {{2}} and {{1}}, {{2}}", ParameterFormat.POSITIONAL, ("1", "2")),
        ("Hi {{ 1 }}", ParameterFormat.POSITIONAL, ("1",)),
        ("no variables", ParameterFormat.POSITIONAL, ()),
        ("{{b_name}} then {{a}} then {{b_name}}", ParameterFormat.NAMED, ("b_name", "a")),
    ],
)
def test_variables_come_in_request_order(
    text: str, parameter_format: ParameterFormat, expected: tuple[str, ...]
) -> None:
    assert variables_in(text, parameter_format, "body") == expected


@pytest.mark.parametrize(
    ("text", "parameter_format", "fragment"),
    [
        ("Hi {{1}} {{3}}", ParameterFormat.POSITIONAL, "{{1}}..{{2}}"),
        ("Hi {{name}}", ParameterFormat.POSITIONAL, "named variable"),
        ("Hi {{Name}}", ParameterFormat.NAMED, "lowercase"),
    ],
)
def test_malformed_variables_are_refused(
    text: str, parameter_format: ParameterFormat, fragment: str
) -> None:
    with pytest.raises(TemplateError, match=fragment.replace("{", r"\{").replace(".", r"\.")):
        variables_in(text, parameter_format, "body")


def _with(component: dict[str, Any]) -> dict[str, Any]:
    return {"name": "t", "language": "en", "components": [component]}


@pytest.mark.parametrize(
    ("document", "fragment"),
    [
        ({"language": "en"}, "without a name"),
        ({"name": "t"}, "no language"),
        ({"name": "t", "language": "en", "parameter_format": "ODD"}, "parameter_format"),
        (_with({"type": "CAROUSEL", "cards": []}), "CAROUSEL components are not supported"),
        (_with({"type": "HEADER", "format": "GIF"}), "unsupported header format"),
        (_with({"type": "HEADER", "format": "TEXT", "text": "{{1}} {{2}}"}), "one variable"),
        (_with({"type": "BUTTONS", "buttons": [{"type": "FLOW"}]}), "FLOW button"),
        (
            _with({"type": "BUTTONS", "buttons": [{"type": "URL", "url": "https://a/{{1}}/b"}]}),
            "at the url's end",
        ),
        (_with({"type": "BUTTONS", "buttons": [{"type": "OTP"}]}), "OTP button needs"),
        (_with({"type": "SIDEBAR"}), "unknown component type"),
    ],
)
def test_templates_wa_sender_cannot_send_are_refused_with_the_reason(
    document: dict[str, Any], fragment: str
) -> None:
    with pytest.raises(TemplateError, match=fragment):
        parse_template(document)


def test_authentication_buttons_carry_their_otp_type() -> None:
    otp = {
        name: parse_template(d).otp_button
        for d in SAMPLE_TEMPLATES
        if (name := d["name"]).startswith("sample_otp_")
    }
    assert {name: b.otp_type for name, b in otp.items() if b} == {
        "sample_otp_copy_code": OtpType.COPY_CODE,
        "sample_otp_one_tap": OtpType.ONE_TAP,
        "sample_otp_zero_tap": OtpType.ZERO_TAP,
    }


def test_a_catalogue_file_may_be_one_template_a_list_or_a_listing_page() -> None:
    assert len(parse_catalogue(RICH)) == 1
    assert len(parse_catalogue([RICH, RICH])) == 2
    assert len(parse_catalogue({"data": [RICH], "paging": {}})) == 1
    with pytest.raises(TemplateError):
        parse_catalogue("spring")


@pytest.mark.parametrize(
    ("name", "language", "status", "message"),
    [
        ("autumn", "en_US", "APPROVED", "template 'autumn' is not in the catalogue"),
        ("spring", "fr_FR", "APPROVED", "template 'spring' has no fr_FR version (it has: en_US)"),
        ("spring", "en_US", "PAUSED", "template spring (en_US) is PAUSED, not APPROVED"),
        ("spring", "en_US", "REJECTED", "template spring (en_US) is REJECTED, not APPROVED"),
    ],
)
def test_campaigns_are_created_only_from_an_approved_entry_in_their_language(
    name: str, language: str, status: str, message: str
) -> None:
    catalogue = [parse_template({**RICH, "status": status})]
    found, same_name = find_template(catalogue, name, language)
    with pytest.raises(TemplateError) as raised:
        check_usable(found, same_name, name, language)
    assert str(raised.value) == message


def test_a_legacy_template_is_a_positional_body_of_its_param_columns() -> None:
    template = legacy_template("spring_sale", "en_US", 2)
    assert template.body is not None and template.body.variables == ("1", "2")
    assert template.header is None and template.buttons == ()
    assert legacy_template("hello", "en", 0).body is None
