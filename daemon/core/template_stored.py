"""A campaign's template binding as stored (`campaigns.template_spec`, JSON) and checked
again against the catalogue as it is now (`campaign start` / `resume`): still there, APPROVED,
and taking the same values as when the campaign was created (`core.template_spec`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from daemon.core.template_spec import (
    CampaignTemplate,
    HeaderFile,
    TemplateSource,
    ValueType,
    template_slots,
)
from daemon.core.templates import TemplateDef, TemplateError, parse_template, template_document


def spec_to_json(spec: CampaignTemplate) -> dict[str, Any]:
    """The campaign's template binding as JSON (campaigns.template_spec)."""
    return {
        "version": 1,
        "name": spec.name,
        "language": spec.language,
        "source": spec.source.value,
        "definitions": [template_document(d) for d in spec.definitions.values()],
        "param_types": {k: v.value for k, v in spec.param_types.items()},
        "constants": dict(spec.constants),
        "columns": dict(spec.columns),
        "header_file": None
        if spec.header_file is None
        else {
            "filename": spec.header_file.filename,
            "mime_type": spec.header_file.mime_type,
            "size": spec.header_file.size,
        },
        "waba_id": spec.waba_id,
        "message_send_ttl_seconds": spec.message_send_ttl_seconds,
        "product_policy": spec.product_policy,
    }


def spec_from_json(document: Mapping[str, Any]) -> CampaignTemplate:
    """The binding `spec_to_json` wrote; TemplateError when it is not one."""
    try:
        definitions = {}
        for raw in document["definitions"]:
            parsed = parse_template(raw)
            definitions[parsed.language] = parsed
        header_file = document.get("header_file")
        return CampaignTemplate(
            name=document["name"],
            language=document["language"],
            source=TemplateSource(document["source"]),
            definitions=definitions,
            param_types={k: ValueType(v) for k, v in document.get("param_types", {}).items()},
            constants=dict(document.get("constants", {})),
            columns=dict(document.get("columns", {})),
            header_file=HeaderFile(**header_file) if header_file else None,
            waba_id=document.get("waba_id", ""),
            message_send_ttl_seconds=document.get("message_send_ttl_seconds"),
            product_policy=document.get("product_policy"),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise TemplateError(f"stored template binding is not readable: {exc}") from None


def catalogue_problem(spec: CampaignTemplate, current: Sequence[TemplateDef]) -> str | None:
    """Why a campaign may not send with the catalogue as it is now (None: it may): a language
    of its template missing or not APPROVED, or the template changed so that the campaign's
    values no longer fit it. `current`: the catalogue's entries of the template's name.

    A campaign named only (unverified) is checked when the catalogue knows the name: its
    language must be there, approved, and take exactly its `--param` body values."""
    by_language = {t.language: t for t in current}
    if not spec.verified:
        if not current:
            return None
        now = by_language.get(spec.language)
        if now is None:
            return f"template {spec.name} has no {spec.language} version in the catalogue"
        if not now.approved:
            return f"template {now.describe()} is {now.status or 'of unknown status'}"
        wanted = {f"body.{i}" for i in range(1, len(spec.columns) + 1)}
        needed = {slot.key for slot in template_slots(now) if slot.required}
        if needed != wanted:
            return (
                f"template {now.describe()} takes {', '.join(sorted(needed)) or 'no values'}"
                f", the campaign gives {', '.join(sorted(wanted)) or 'none'}:"
                " create the campaign from the catalogue"
            )
        return None
    for language, definition in spec.definitions.items():
        now = by_language.get(language)
        if now is None:
            if spec.source is TemplateSource.FILE and language == spec.language and not current:
                return None  # a template file's template the catalogue does not know
            return f"template {spec.name} ({language}) is no longer in the catalogue"
        if not now.approved:
            return f"template {now.describe()} is {now.status or 'of unknown status'}"
        before = _shape(definition, spec.param_types)
        after = _shape(now, spec.param_types)
        if before != after:
            gone = sorted(k for k, _ in before - after)
            new = sorted(k for k, _ in after - before)
            change = (
                "; ".join(
                    part
                    for part in (
                        f"now takes {', '.join(new)}" if new else "",
                        f"no longer takes {', '.join(gone)}" if gone else "",
                    )
                    if part
                )
                or "its components changed"
            )
            return f"template {now.describe()} changed since the campaign was created: {change}"
    return None


def _shape(template: TemplateDef, types: Mapping[str, ValueType]) -> set[tuple[str, bool]]:
    shape = {(slot.key, slot.required) for slot in template_slots(template, types)}
    shape.add((f"format:{template.parameter_format.value}", True))
    return shape
