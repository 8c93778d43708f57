"""`wa-sender contacts import|remove|export|show`."""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from daemon.cli.common import (
    Commands,
    add_country_option,
    default_country,
    parse_phone,
    phone_arg,
    phones_of,
    positive_int,
    print_json,
    with_connection,
)
from daemon.config import Config
from daemon.core.states import ContactState
from daemon.db import campaigns as store
from daemon.db.importer import ImportResult, Progress, import_contacts
from daemon.errors import UsageError
from daemon.ops.contacts_out import EXPORT_FORMATS, contact_history, export_contacts
from daemon.ops.planning import windows_after_import
from daemon.ops.render import printable

PROGRESS_FROM_BYTES = 4 << 20  # a progress line on stderr for files over 4 MiB


def add_parser(commands: Commands) -> None:
    """Register `contacts` and its actions."""
    contacts = commands.add_parser("contacts", help="import, remove, export or look up contacts")
    sub = contacts.add_subparsers(dest="contacts_command", required=True, metavar="ACTION")
    p = sub.add_parser(
        "import", help="load a CSV (header 'phone' or 'Guest phone number' + parameter columns)"
    )
    p.add_argument("id", type=positive_int, help="campaign id")
    p.add_argument("file", help="the CSV file")
    add_country_option(p, "numbers (the campaign's --default-country first)")
    p.add_argument(
        "--encoding",
        metavar="NAME",
        help="the file's encoding when it is not UTF-8 or UTF-16 with a BOM (cp1250, latin-1...)",
    )
    p.add_argument(
        "--dry-run", action="store_true", help="validate and print the counts; write nothing"
    )
    p.add_argument("--json", action="store_true", help="print the counts as JSON")
    p.set_defaults(handler=cmd_contacts_import)
    p = sub.add_parser("remove", help="remove contacts (campaign draft or paused only)")
    p.add_argument("id", type=positive_int, help="campaign id")
    p.add_argument(
        "phones", nargs="+", type=phone_arg, metavar="PHONE", help="phone numbers to remove"
    )
    add_country_option(p, "numbers")
    p.add_argument("--json", action="store_true", help="print what was removed as JSON")
    p.set_defaults(handler=cmd_contacts_remove)
    p = sub.add_parser("export", help="the campaign's contacts as CSV or JSON, streamed")
    p.add_argument("id", type=positive_int, help="campaign id")
    p.add_argument(
        "--state",
        type=states_arg,
        metavar="S,...",
        help="only contacts in these states (e.g. error,delivery_failed)",
    )
    p.add_argument("--format", choices=EXPORT_FORMATS, default="csv", help="csv (default) or json")
    p.add_argument("--output", type=Path, metavar="FILE", help="write here instead of stdout")
    p.set_defaults(handler=cmd_contacts_export)
    p = sub.add_parser("show", help="one contact's state, attempts, receipts and suppression")
    p.add_argument("id", type=positive_int, help="campaign id")
    p.add_argument("phone", type=phone_arg, metavar="PHONE", help="the contact's phone number")
    add_country_option(p, "a number")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=cmd_contacts_show)


def states_arg(raw: str) -> list[ContactState]:
    """Argument type: comma-separated contact state values."""
    states = []
    for part in raw.split(","):
        name = part.strip()
        try:
            states.append(ContactState(name))
        except ValueError:
            known = ", ".join(s.value for s in ContactState)
            raise argparse.ArgumentTypeError(f"unknown state {name!r} (one of {known})") from None
    return states


def _progress_printer() -> Progress:
    started = time.monotonic()

    def show(done: int, size: int, rows: int) -> None:
        elapsed = max(time.monotonic() - started, 1e-6)
        rate = rows / elapsed
        share = done / size if size else 1.0
        eta = elapsed * (1 - share) / share if share > 0 else 0.0
        sys.stderr.write(f"\r{share:6.1%}  {rows:,} rows  {rate:,.0f} rows/s  ETA {eta:4.0f} s ")
        if done >= size:
            sys.stderr.write("\n")
        sys.stderr.flush()

    return show


def _print_result(result: ImportResult, as_json: bool) -> None:
    if as_json:
        document: dict[str, object] = {
            "campaign_id": result.campaign_id,
            "rows": result.rows,
            "imported": result.imported,
            "invalid": result.invalid,
            "reasons": result.reasons,
        }
        if result.notes:  # e.g. {"language_fallback": n}
            document["notes"] = result.notes
        if result.already_in_campaign:
            document["already_in_campaign"] = result.already_in_campaign
        if result.dry_run:
            document["dry_run"] = True
        print(json.dumps(document))
        return
    verb = "would import" if result.dry_run else "imported"
    print(f"{verb} {result.imported}, invalid {result.invalid} (of {result.rows} rows)")
    for reason, n in sorted(result.reasons.items(), key=lambda kv: (-kv[1], kv[0])):
        print(f"  {reason}: {n}")
    if result.already_in_campaign:
        print(f"  {result.already_in_campaign} rows were already in this campaign (not added)")
    fallback = result.notes.get("language_fallback")
    if fallback:
        print(
            f"  language_fallback: {fallback} contact(s) in a language the template"
            " lacks get the campaign's"
        )
    if result.dry_run:
        print("dry run: nothing was written")


def cmd_contacts_import(args: argparse.Namespace, config: Config) -> int:
    """`contacts import ID FILE`: load a CSV; prints what was imported and why rows were not."""
    path = Path(args.file)
    country = default_country(args, config)
    big = path.is_file() and path.stat().st_size > PROGRESS_FROM_BYTES

    async def work(conn: asyncpg.Connection) -> int:
        result = await import_contacts(
            conn,
            args.id,
            path,
            default_region=country,
            encoding=args.encoding,
            dry_run=args.dry_run,
            progress=_progress_printer() if big else None,
            block_us_marketing=config.imports.block_us_marketing,
        )
        if not args.dry_run and result.imported:
            await windows_after_import(
                conn, args.id, default_zone=config.planning.time_zone, now=datetime.now(UTC)
            )
        _print_result(result, args.json)
        return 0

    return with_connection(config, work)


def cmd_contacts_remove(args: argparse.Namespace, config: Config) -> int:
    """`contacts remove ID PHONE...`: exit code 1 when a phone could not be removed."""
    phones = phones_of(args, config)

    async def work(conn: asyncpg.Connection) -> int:
        removed, not_removed = await store.remove_contacts(conn, args.id, phones)
        if args.json:
            print_json(
                {
                    "campaign_id": args.id,
                    "removed": len(removed),
                    "not_removed": not_removed,
                }
            )
        else:
            print(f"removed {len(removed)}")
            for phone, why in not_removed.items():
                print(f"  not removed {phone}: {why}")
        return 0 if not not_removed else 1

    return with_connection(config, work)


def cmd_contacts_export(args: argparse.Namespace, config: Config) -> int:
    """`contacts export ID`: every contact (or those in --state) to stdout or --output."""

    async def work(conn: asyncpg.Connection) -> int:
        if args.output is None:
            n = await export_contacts(conn, args.id, sys.stdout, states=args.state, fmt=args.format)
        else:
            try:
                out = args.output.open("w", encoding="utf-8", newline="")
            except OSError as exc:
                raise UsageError(f"cannot write {args.output}: {exc.strerror}") from None
            with out:
                n = await export_contacts(conn, args.id, out, states=args.state, fmt=args.format)
            print(f"exported {n} contacts to {args.output}", file=sys.stderr)
        return 0

    return with_connection(config, work)


def cmd_contacts_show(args: argparse.Namespace, config: Config) -> int:
    """`contacts show ID PHONE`: exit code 1 when the campaign has no such contact."""
    phone = parse_phone(args.phone, default_country(args, config))

    async def work(conn: asyncpg.Connection) -> int:
        history = await contact_history(conn, args.id, phone)
        if args.json:
            print_json(
                {
                    "campaign_id": history.campaign_id,
                    "phone": history.phone,
                    "contacts": history.contacts,
                    "suppression": history.suppression,
                }
            )
            return 0 if history.contacts else 1
        if not history.contacts:
            print(f"campaign {args.id} has no contact {phone}")
        for c in history.contacts:
            print(f"contact {c['id']}  {c['phone']}  {c['state_label']}")
            if c["invalid_reason"]:
                print(f"  invalid: {printable(c['invalid_reason'])} (line {c['source_line']})")
            where = ", ".join(x for x in (c["region"], c["time_zone"]) if x)
            if where:
                print(f"  number: {where}")
            print(f"  attempts: {c['attempts']} (unknown outcome: {c['unknown_attempts']})")
            _print_attempts(c)
            for label in ("claimed_at", "sent_at", "delivered_at", "read_at", "failed_at"):
                if c[label] is not None:
                    print(f"  {label[:-3]}: {c[label]:%Y-%m-%d %H:%M:%S%z}")
            if c["error_code"] is not None:
                title = printable(c["error_title"] or "")
                print(f"  last error: {c['error_code']} {title}")
            if c["next_attempt_at"] is not None:
                print(f"  next attempt: {c['next_attempt_at']:%Y-%m-%d %H:%M:%S%z}")
            if c["wamid"]:
                print(f"  wamid: {printable(c['wamid'])}")
            for r in c["receipts"]:
                at = r["status_at"] or r["received_at"]
                code = f" {r['error_code']} {printable(r['error_title'] or '')}" * bool(
                    r["error_code"]
                )
                print(
                    f"  receipt {r['status']} at {at:%Y-%m-%d %H:%M:%S%z}{code}"
                    f" ({r['processing_state']})"
                )
            params = ", ".join(f"{k}={printable(v)}" for k, v in c["params"].items())
            print(f"  params: {params}")
        s = history.suppression
        if s is None:
            print(f"suppression: {phone} is not on the suppression list")
        else:
            print(
                f"suppression: listed since {s['created_at']:%Y-%m-%d} ({printable(s['reason'])})"
            )
        return 0 if history.contacts else 1

    return with_connection(config, work)


def _print_attempts(contact: dict[str, Any]) -> None:
    """One line per attempt outcome recorded: when, what it led to, the error code."""
    for a in contact["attempt_history"]:
        code = f" {a['error_code']}" if a["error_code"] is not None else ""
        title = f" {printable(a['error_title'])}" if a["error_title"] else ""
        unknown = " (outcome unknown)" if a["unknown"] else ""
        wamid = f" {printable(a['wamid'])}" if a["wamid"] else ""
        print(
            f"  attempt {a['attempt']} at {a['at']:%Y-%m-%d %H:%M:%S%z}: {a['outcome']}"
            f"{code}{title}{wamid}{unknown}"
        )
    logged = {a["attempt"] for a in contact["attempt_history"]}
    done = contact["attempts"]
    if contact["state"] == "in_progress" and done not in logged:
        print(f"  attempt {done}: in flight")
        done -= 1
    # Attempts made before schema version 10 kept no record of their own.
    older = [n for n in range(1, done + 1) if n not in logged]
    if older:
        print(f"  ({len(older)} earlier attempt(s) without a record: made before schema 10)")
