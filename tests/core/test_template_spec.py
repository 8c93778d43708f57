"""The naming convention (which key each value of a template has) and a campaign's binding of
its template to CSV columns and constants; what `campaign start` re-checks against the
catalogue."""

from __future__ import annotations

from typing import Any

import pytest

from daemon.core.template_check import check_constants
from daemon.core.template_spec import (
    HeaderFile,
    TemplateSource,
    ValueType,
    bind_template,
    template_slots,
)
from daemon.core.template_stored import catalogue_problem, spec_from_json, spec_to_json
from daemon.core.templates import TemplateDef, TemplateError, parse_template
from daemon.mockapi.catalogue import SAMPLE_TEMPLATES


def sample(name: str, language: str = "en_US", **changes: Any) -> TemplateDef:
    document = next(d for d in SAMPLE_TEMPLATES if d["name"] == name and d["language"] == language)
    return parse_template({**document, **changes})


def keys(template: TemplateDef, **types: ValueType) -> list[tuple[str, bool]]:
    return [(s.key, s.required) for s in template_slots(template, types) if not s.constant_only]


@pytest.mark.parametrize(
    ("name", "types", "expected"),
    [
        ("sample_header_text", {}, [("header.text", True), ("body.1", True)]),
        ("sample_header_text_named", {}, [("header.text", True), ("body.first_name", True)]),
        ("sample_image", {}, [("header.image.link", True), ("body.1", True)]),
        ("sample_video_named", {}, [("header.video.link", True), ("body.first_name", True)]),
        (
            "sample_document",
            {},
            [("header.document.link", True), ("header.document.filename", False), ("body.1", True)],
        ),
        (
            "sample_location",
            {},
            [
                ("header.location.latitude", True),
                ("header.location.longitude", True),
                ("header.location.name", False),
                ("header.location.address", False),
                ("body.1", True),
            ],
        ),
        (
            "sample_body_types_named",
            {"amount": ValueType.CURRENCY, "due_date": ValueType.DATE_TIME},
            [
                ("body.first_name", True),
                ("body.amount.amount", True),
                ("body.amount.code", True),
                ("body.amount.fallback", False),
                ("body.due_date", True),
            ],
        ),
        ("sample_url_button", {}, [("body.1", True), ("button.0.url_suffix", True)]),
        ("sample_quick_reply", {}, [("body.1", True), ("button.1.payload", False)]),
        ("sample_copy_code_named", {}, [("body.first_name", True), ("button.0.coupon_code", True)]),
        ("sample_otp_one_tap", {}, [("body.1", True)]),
    ],
)
def test_each_value_has_its_key_by_the_naming_convention(
    name: str, types: dict[str, ValueType], expected: list[tuple[str, bool]]
) -> None:
    assert keys(sample(name), **types) == expected


def test_media_ids_are_constants_only_and_otp_codes_are_limited_to_15() -> None:
    media = {s.key: s for s in template_slots(sample("sample_image"))}["header.image.id"]
    assert media.constant_only and not media.required
    code = template_slots(sample("sample_otp_copy_code"))[0]
    assert (code.key, code.max_length) == ("body.1", 15)


def bind(name: str, **kwargs: Any) -> Any:
    return bind_template(sample(name), source=TemplateSource.CATALOGUE, **kwargs)


@pytest.mark.parametrize(
    ("name", "kwargs", "fragment"),
    [
        ("sample_body_types", {"param_columns": ["a"]}, "1 --param column(s) for 3 body"),
        ("sample_image", {"sets": {"header.video.link": "x"}}, "unknown --set key"),
        ("sample_body_types", {"param_types": {"9": "currency"}}, "no body variable '9'"),
        ("sample_body_types", {"param_types": {"2": "money"}}, "not one of text, currency"),
        (
            "sample_body_types",
            {"param_types": {"2": "currency"}, "param_columns": ["a", "b", "c"]},
            "cannot carry currency",
        ),
        ("sample_otp_copy_code", {"param_types": {"1": "date_time"}}, "must be text"),
        (
            "sample_image",
            {
                "sets": {"header.image.link": "https://a/b.jpg"},
                "header_file": HeaderFile("a.jpg", "image/jpeg", 10),
            },
            "two sources",
        ),
        (
            "sample_image",
            {"header_file": HeaderFile("a.pdf", "application/pdf", 10)},
            "takes image/jpeg, image/png",
        ),
        (
            "sample_image",
            {"header_file": HeaderFile("a.jpg", "image/jpeg", 6 * 1024**2)},
            "at most 5242880",
        ),
        ("sample_body_types", {"header_file": HeaderFile("a.jpg", "image/jpeg", 1)}, "no media"),
        ("sample_rich_named", {"message_send_ttl_seconds": 60}, "within 43200..2592000"),
        ("sample_rich_named", {"product_policy": "LAX"}, "product policy must be one of"),
    ],
)
def test_bindings_that_do_not_fit_the_template_are_refused(
    name: str, kwargs: dict[str, Any], fragment: str
) -> None:
    with pytest.raises(TemplateError) as raised:
        bind(name, **kwargs)
    assert fragment in str(raised.value)


@pytest.mark.parametrize(
    ("sets", "fragment"),
    [
        ({"header.image.link": "http://insecure.example/a.jpg"}, "invalid url"),
        ({"body.first_name": "two\nlines"}, "invalid parameter text"),
        ({"body.first_name": ""}, "empty value"),
    ],
)
def test_constants_are_checked_like_values(sets: dict[str, str], fragment: str) -> None:
    with pytest.raises(TemplateError) as raised:
        check_constants(bind("sample_image_named", sets=sets))
    assert fragment in str(raised.value)


def test_a_binding_survives_the_database_round_trip() -> None:
    spec = bind_template(
        sample("sample_header_text"),
        others=[sample("sample_header_text", "de_DE")],
        source=TemplateSource.CATALOGUE,
        param_columns=["first_name"],
        sets={"header.text": "Summer"},
        waba_id="1234",
        message_send_ttl_seconds=86400,
        product_policy="STRICT",
    )
    assert set(spec.definitions) == {"en_US", "de_DE"}
    assert spec_from_json(spec_to_json(spec)) == spec


def test_the_import_reads_required_and_optional_columns() -> None:
    spec = bind(
        "sample_document",
        sets={"header.document.link": "https://cdn.example/a.pdf"},
        param_columns=["name"],
    )
    assert spec.import_columns() == (("name",), ("header.document.filename", "language"))
    with_file = bind("sample_document", header_file=HeaderFile("a.pdf", "application/pdf", 9))
    assert with_file.constants["header.document.filename"] == "a.pdf"
    assert with_file.import_columns() == (("body.1",), ("language",))
    per_contact = bind("sample_quick_reply")
    assert per_contact.import_columns() == (("body.1",), ("button.1.payload", "language"))


def test_the_catalogue_allows_an_unchanged_approved_template() -> None:
    spec = bind("sample_url_button")
    assert catalogue_problem(spec, [sample("sample_url_button")]) is None


@pytest.mark.parametrize(
    ("now", "problem"),
    [
        ([], "template sample_url_button (en_US) is no longer in the catalogue"),
        ([sample("sample_url_button", status="PAUSED")], "sample_url_button (en_US) is PAUSED"),
        ([sample("sample_url_button", status="DISABLED")], "is DISABLED"),
        (
            [sample("sample_url_button", components=[{"type": "BODY", "text": "{{1}} {{2}}"}])],
            "changed since the campaign was created: now takes body.2; no longer takes"
            " button.0.url_suffix",
        ),
    ],
)
def test_start_is_refused_when_the_catalogue_entry_changed(
    now: list[TemplateDef], problem: str
) -> None:
    found = catalogue_problem(bind("sample_url_button"), now)
    assert found is not None and problem in found


def test_unverified_campaigns_are_checked_when_the_catalogue_knows_their_name() -> None:
    from daemon.core.model import legacy_spec
    from daemon.core.payload import Template

    legacy = legacy_spec(Template("sample_header_text", "en_US", ("first_name",)))
    assert catalogue_problem(legacy, []) is None  # no catalogue entry: as before
    problem = catalogue_problem(legacy, [sample("sample_header_text")])
    assert problem is not None and "takes body.1, header.text" in problem
    fits = legacy_spec(Template("sample_body_types", "en_US", ("a", "b", "c")))
    assert catalogue_problem(fits, [sample("sample_body_types")]) is None
    paused = catalogue_problem(fits, [sample("sample_body_types", status="PAUSED")])
    assert paused is not None and "PAUSED" in paused
