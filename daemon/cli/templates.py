"""`wa-sender templates sync|list|show`: the WhatsApp Business Account's template catalogue."""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import asyncpg
import orjson

from daemon.cli.common import Commands, with_connection
from daemon.config import Config
from daemon.core.template_spec import ValueType, template_slots
from daemon.core.templates import (
    ButtonType,
    HeaderFormat,
    TemplateDef,
    TemplateError,
    parse_catalogue,
    parse_template,
)
from daemon.db import templates_store
from daemon.errors import ConfigError, TemplateRefusedError
from daemon.whatsapp.management import fetch_templates, management_session


def add_parser(commands: Commands) -> None:
    """Register `templates` and its actions."""
    templates = commands.add_parser("templates", help="the template catalogue (sync, list, show)")
    sub = templates.add_subparsers(dest="templates_command", required=True, metavar="ACTION")
    p = sub.add_parser(
        "sync", help="read the WABA's templates from Meta (whatsapp.waba_id) into the catalogue"
    )
    p.add_argument("--json", action="store_true", help="print the counts synced as JSON")
    p.set_defaults(handler=cmd_templates_sync)
    p = sub.add_parser("list", help="the catalogue: one line per template and language")
    p.add_argument("--json", action="store_true", help="print the catalogue as JSON")
    p.set_defaults(handler=cmd_templates_list)
    p = sub.add_parser(
        "show", help="a template's components and the CSV columns / constants each one needs"
    )
    p.add_argument("name", help="the template's name")
    p.add_argument("--language", help="only this language (default: every one)")
    p.add_argument(
        "--template-file", type=Path, help="read the template from this JSON file (Meta's shape)"
    )
    p.add_argument("--json", action="store_true", help="print the template and its keys as JSON")
    p.set_defaults(handler=cmd_templates_show)


def cmd_templates_sync(args: argparse.Namespace, config: Config) -> int:
    """`templates sync`: every page of GET /{waba_id}/message_templates, stored."""
    whatsapp = config.whatsapp
    if not whatsapp.waba_id:
        raise ConfigError("whatsapp.waba_id is not set: the catalogue is read from that WABA")
    if not whatsapp.access_token:
        raise ConfigError(
            "whatsapp.access_token is not set: set WA_SENDER_WHATSAPP_ACCESS_TOKEN "
            "or a systemd credential named access_token"
        )

    async def fetch() -> list[dict[str, Any]]:
        async with management_session(
            whatsapp.access_token, timeout_s=whatsapp.request_timeout_s
        ) as session:
            return await fetch_templates(
                session, whatsapp.base_url, whatsapp.api_version, whatsapp.waba_id
            )

    documents = asyncio.run(fetch())

    async def work(conn: asyncpg.Connection) -> int:
        result = await templates_store.save_catalogue(conn, whatsapp.waba_id, documents)
        if args.json:
            print(
                json.dumps(
                    {
                        "waba_id": whatsapp.waba_id,
                        "stored": result.stored,
                        "unlisted": [list(pair) for pair in result.unlisted],
                    }
                )
            )
        else:
            print(f"synced {result.stored} template(s) of WABA {whatsapp.waba_id}")
            for name, language in result.unlisted:
                print(f"  {name} ({language}): no longer listed, marked DELETED")
        return 0

    return with_connection(config, work)


def cmd_templates_list(args: argparse.Namespace, config: Config) -> int:
    """`templates list`: name, language, status, category, format, components."""

    async def work(conn: asyncpg.Connection) -> int:
        rows = await templates_store.list_catalogue(conn, config.whatsapp.waba_id)
        if args.json:
            print(json.dumps([_row_dict(r) for r in rows], indent=2))
        elif not rows:
            print("no templates: set whatsapp.waba_id and run `wa-sender templates sync`")
        else:
            for r in rows:
                print(
                    f"{r['name']:<32} {r['language']:<8} {r['status']:<10} {r['category']:<15}"
                    f" {r['parameter_format']:<10} {_summary(r['document'])}"
                )
        return 0

    return with_connection(config, work)


def cmd_templates_show(args: argparse.Namespace, config: Config) -> int:
    """`templates show NAME [--language L]`: each component and the values it needs."""
    if args.template_file is not None:
        found = [t for t in read_template_file(args.template_file) if t.name == args.name]
        return _show(args, found)

    async def work(conn: asyncpg.Connection) -> int:
        found = await templates_store.templates_named(conn, args.name, config.whatsapp.waba_id)
        return _show(args, found)

    return with_connection(config, work)


def read_template_file(path: Path) -> list[TemplateDef]:
    """The templates of a JSON file in Meta's shape; TemplateRefusedError (one line) if not."""
    try:
        document = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        raise TemplateRefusedError(f"template file not found: {path}") from None
    except (orjson.JSONDecodeError, OSError) as exc:
        raise TemplateRefusedError(f"{path}: not a JSON file: {exc}") from None
    try:
        return parse_catalogue(document)
    except TemplateError as exc:
        raise TemplateRefusedError(f"{path}: {exc}") from None


def _show(args: argparse.Namespace, found: Sequence[TemplateDef]) -> int:
    chosen = [t for t in found if args.language in (None, t.language)]
    if not chosen:
        where = f" in {args.language}" if args.language else ""
        languages = ", ".join(t.language for t in found)
        also = f" (it has: {languages})" if found else ""
        raise TemplateRefusedError(f"template {args.name!r} not found{where}{also}")
    if args.json:
        print(json.dumps([describe_json(t) for t in chosen], indent=2))
    else:
        print("\n\n".join(describe(t) for t in chosen))
        print(
            "\nEach key is a CSV column (a value per contact) or a campaign constant"
            " (`campaign create --set KEY=VALUE`)."
        )
    return 0


def describe(template: TemplateDef) -> str:
    """A template's components, each followed by the keys of the values it needs."""
    lines = [
        f"{template.describe()}  {template.category or '-'}  {template.status or '-'}"
        f"  {template.parameter_format.value}"
    ]
    slots = {slot.key: slot for slot in template_slots(template)}

    def key_line(key: str, note: str = "") -> None:
        slot = slots[key]
        need = "required" if slot.required else "optional"
        limit = f", at most {slot.max_length}" if slot.max_length else ""
        lines.append(f"      {key:<34} {need}{limit}: {slot.help}{note}")

    header = template.header
    if header is not None:
        lines.append(
            f"  HEADER {header.format.value}" + (f"  {header.text!r}" if header.text else "")
        )
        if header.format is HeaderFormat.TEXT and header.variables:
            key_line("header.text")
        elif header.format is HeaderFormat.LOCATION:
            for part in ("latitude", "longitude", "name", "address"):
                key_line(f"header.location.{part}")
        elif header.format is not HeaderFormat.TEXT:
            kind = header.format.value.lower()
            key_line(
                f"header.{kind}.link",
                f" (or --set header.{kind}.id=MEDIA_ID, or --header-file FILE)",
            )
            if header.format is HeaderFormat.DOCUMENT:
                key_line("header.document.filename")
    if template.body is not None:
        lines.append(f"  BODY  {template.body.text!r}")
        otp = template.otp_button is not None
        for position, variable in enumerate(template.body.variables):
            key = f"body.{variable}"
            if otp and position == 0:
                key_line(key)
                continue
            key_line(key)
            lines.append(
                f"      {'':<34} or --param-type {variable}=date_time (same column), or"
                f" --param-type {variable}=currency: {key}.amount, {key}.code"
                f" [, {key}.fallback]"
            )
    for button in template.buttons:
        text = f" {button.text!r}" if button.text else ""
        url = f" {button.url}" if button.url else ""
        otp_type = f" ({button.otp_type.value})" if button.otp_type else ""
        lines.append(f"  BUTTON {button.index} {button.type.value}{otp_type}{text}{url}")
        prefix = f"button.{button.index}"
        if button.type is ButtonType.URL and button.dynamic:
            key_line(f"{prefix}.url_suffix")
        elif button.type is ButtonType.QUICK_REPLY:
            key_line(f"{prefix}.payload")
        elif button.type is ButtonType.COPY_CODE:
            key_line(f"{prefix}.coupon_code")
        elif button.type is ButtonType.OTP and template.body and template.body.variables:
            lines.append(f"      sends body.{template.body.variables[0]} (the code) again")
    if len(lines) == 1:
        lines.append("  (no variables: nothing to supply)")
    return "\n".join(lines)


def describe_json(template: TemplateDef) -> dict[str, Any]:
    """`describe` as JSON: the template and its slots (text types as listed)."""
    return {
        "name": template.name,
        "language": template.language,
        "status": template.status,
        "category": template.category,
        "parameter_format": template.parameter_format.value,
        "slots": [
            {
                "key": slot.key,
                "required": slot.required,
                "max_length": slot.max_length,
                "constant_only": slot.constant_only,
                "help": slot.help,
            }
            for slot in template_slots(template)
        ],
        "param_types": [t.value for t in ValueType],
    }


def _summary(document: object) -> str:
    try:
        template = parse_template(document)  # type: ignore[arg-type]
    except (TemplateError, AttributeError):
        return "(components not readable)"
    parts = []
    if template.header is not None:
        parts.append(f"{template.header.format.value} header")
    if template.body is not None:
        parts.append(f"body {len(template.body.variables)} variable(s)")
    if template.buttons:
        parts.append(", ".join(b.type.value for b in template.buttons))
    return "; ".join(parts) or "-"


def _row_dict(r: asyncpg.Record) -> dict[str, Any]:
    return {
        "waba_id": r["waba_id"],
        "name": r["name"],
        "language": r["language"],
        "status": r["status"],
        "category": r["category"],
        "parameter_format": r["parameter_format"],
        "template_id": r["template_id"],
        "synced_at": r["synced_at"].isoformat(),
        "components": r["document"].get("components", []),
    }
