"""`wa-sender demo`: a whole campaign end to end on the embedded defaults.

A throwaway PostgreSQL (unless DATABASE_URL is set), the mock Cloud API on loopback with a
realistic mix of faults and status receipts, the real daemon in this process, live progress,
and the final status table.
"""

from __future__ import annotations

import asyncio
import csv
import secrets
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import TextIO

import asyncpg

from daemon.config import Config, Secret, with_overrides
from daemon.core.model import CampaignProgress
from daemon.core.states import PENDING_STATES, CampaignCommand, CampaignState, ContactState
from daemon.db import campaigns as store
from daemon.db import templates_store
from daemon.db.importer import ImportResult, import_contacts
from daemon.db.pool import connect
from daemon.db.receipts_store import pending_receipt_count
from daemon.db.sql import query
from daemon.engine.ports import free_port
from daemon.engine.service import default_components, run_daemon
from daemon.logs import configure_logging, mask_phone
from daemon.mockapi.config import FaultConfig, MockConfig, ReceiptConfig
from daemon.mockapi.inbound import inbound_document
from daemon.mockapi.server import RunningMock, start_mock_server
from daemon.ops.create import CampaignRequest, create_campaign_from_request
from daemon.ops.planning import PlanningChange, update_planning
from daemon.ops.render import progress_bar, progress_table
from daemon.whatsapp.management import fetch_templates, management_session

DEMO_NUMBER_ID = "106540352242922"
DEMO_TOKEN = "demo-token"
# The demo's template (in the mock's catalogue): an image header, a named body variable
# ({{first_name}}) and a URL button whose url ends in each contact's own suffix.
DEMO_TEMPLATE = "spring_offer"
DEMO_IMAGE = "https://shop.example.com/img/spring.jpg"
# The states of a contact the API accepted a message for.
REACHED = (
    ContactState.SENT,
    ContactState.DELIVERED,
    ContactState.READ,
    ContactState.DELIVERY_FAILED,
)
# Recipients that the mock refuses for good, to show Sending failed with its code.
NOT_ON_WHATSAPP = {"447700000003": 131026, "447700000011": 131026}


def write_generated_contacts(path: Path, sample: Path, count: int) -> None:
    """The shipped sample (with its invalid rows) plus `count` generated contacts."""
    with sample.open(encoding="utf-8") as src, path.open("w", encoding="utf-8", newline="") as out:
        out.write(src.read())
        writer = csv.writer(out)
        for i in range(count):
            writer.writerow([f"+44 7911 {i:06d}", f"Guest{i}", f"G{i:06d}"])


def demo_config(config: Config, mock_url: str, webhook_port: int, rate: float) -> Config:
    """`config` pointed at the local mock, with throwaway secrets and the demo's pace."""
    return with_overrides(
        config,
        whatsapp={
            "base_url": mock_url,
            "access_token": Secret(DEMO_TOKEN),
            "app_secret": Secret(secrets.token_hex(16)),
            "verify_token": Secret(secrets.token_hex(8)),
            "request_timeout_s": 5.0,
        },
        sender={
            "rate_per_second": rate,
            "burst": max(1.0, rate / 10),
            "concurrency": 64,
            "retry_initial_s": 0.2,
            "retry_max_s": 1.0,
            "idle_poll_s": 0.5,
        },
        webhook={"enabled": True, "host": "127.0.0.1", "port": webhook_port},
        recovery={"lease_s": 30.0, "grace_s": 2.0},
        metrics={"enabled": False},
        logging={"level": "warning"},
    )


async def run_demo(
    config: Config,
    dsn: str,
    contacts: int,
    rate: float,
    out: TextIO,
    *,
    window: str | None = None,
) -> int:
    """The whole demo on `dsn`: a campaign (with `window`: that send window), the mock, the
    daemon, live progress; its exit code."""
    configure_logging("console", "warning", stream=sys.stderr)
    webhook_port = free_port()
    sample = resources.files("daemon.demo").joinpath("contacts.csv")
    app_secret = secrets.token_hex(16)
    conn = await connect(dsn)
    try:
        mock_config = MockConfig(
            token=DEMO_TOKEN,
            seed=1,
            faults=FaultConfig(
                latency_ms=40, jitter_ms=40, transient_rate=0.03, forced_errors=NOT_ON_WHATSAPP
            ),
            receipts=ReceiptConfig(
                enabled=True,
                webhook_url=f"http://127.0.0.1:{webhook_port}{config.webhook.path}",
                app_secret=app_secret,
                delivered_rate=0.93,
                read_rate=0.6,
                read_without_delivered_rate=0.05,
                failed_rate=0.03,
                duplicate_rate=0.05,
                reorder_rate=0.1,
                sent_delay_s=(0.05, 0.3),
                delivered_delay_s=(0.2, 1.0),
                read_delay_s=(0.3, 1.5),
            ),
        )
        async with start_mock_server(mock_config) as mock:
            campaign_id, _imported = await create_demo_campaign(
                conn, mock.base_url, mock_config.waba_id, sample, contacts, out
            )
            if window is not None:
                await _set_window(conn, campaign_id, window, config, out)
            daemon_cfg = demo_config(config, mock.base_url, webhook_port, rate)
            daemon_cfg = with_overrides(daemon_cfg, whatsapp={"app_secret": Secret(app_secret)})
            print(
                f"mock Cloud API at {mock.base_url}; daemon sending at {rate:.0f} msg/s", file=out
            )
            stop = asyncio.Event()
            daemon = asyncio.create_task(
                run_daemon(
                    daemon_cfg,
                    dsn,
                    stop=stop,
                    components=default_components(daemon_cfg),
                    install_signal_handlers=False,
                )
            )
            try:
                await store.change_campaign_state(conn, campaign_id, CampaignCommand.START)
                # With a window that holds every contact nothing goes out to reply to.
                listening = (
                    asyncio.create_task(listen_in(dsn, mock, campaign_id))
                    if window is None
                    else None
                )
                all_final = await _show_progress(
                    conn, campaign_id, out, daemon, windowed=window is not None
                )
                heard = await asyncio.wait_for(listening, 30) if listening is not None else None
                await asyncio.wait_for(mock.receipts.drain(), 30)
                await _wait_receipts_applied(conn, timeout_s=15)
                if all_final:
                    await _wait_campaign_finished(conn, campaign_id, daemon, timeout_s=15)
            finally:
                stop.set()
                code = await asyncio.wait_for(daemon, 60)
        progress = await store.campaign_progress(conn, campaign_id)
        print("\n" + progress_table(progress), file=out)
        row = await conn.fetchrow(query("demo_listening"), campaign_id)
        if heard is not None:
            print("\n" + listening_line(heard, dict(row), mock), file=out)
        print(closing_line(progress, len(mock.state.accepted), mock, row["stopped"]), file=out)
        return code
    finally:
        await conn.close()


async def create_demo_campaign(
    conn: asyncpg.Connection,
    mock_url: str,
    waba_id: str,
    sample: resources.abc.Traversable,
    contacts: int,
    out: TextIO,
) -> tuple[int, ImportResult]:
    """Sync the mock's template catalogue, create the campaign from it, import the contacts."""
    async with management_session(DEMO_TOKEN, timeout_s=10.0) as session:
        documents = await fetch_templates(session, mock_url, "v23.0", waba_id)
    synced = await templates_store.save_catalogue(conn, waba_id, documents)
    request = CampaignRequest(
        name="Demo spring offer",
        template=DEMO_TEMPLATE,
        language="en_US",
        phone_number_id=DEMO_NUMBER_ID,
        sets={"header.image.link": DEMO_IMAGE},
    )
    created = await create_campaign_from_request(conn, request, waba_id)
    with tempfile.TemporaryDirectory(prefix="wa-sender-demo-") as tmp:
        csv_path = Path(tmp) / "contacts.csv"
        with resources.as_file(sample) as sample_path:
            write_generated_contacts(csv_path, sample_path, contacts)
        result = await import_contacts(conn, created.campaign_id, csv_path)
    reasons = ", ".join(f"{k} {v}" for k, v in sorted(result.reasons.items()))
    print(
        f"templates: {synced.stored} synced from the mock's catalogue; campaign"
        f" {created.campaign_id} sends {DEMO_TEMPLATE} (image header, {{{{first_name}}}},"
        " URL button)",
        file=out,
    )
    print(
        f"campaign {created.campaign_id}: imported {result.imported}, "
        f"invalid {result.invalid} ({reasons})",
        file=out,
    )
    return created.campaign_id, result


def closing_line(
    progress: CampaignProgress, accepted: int, mock: RunningMock, opted_out: int = 0
) -> str:
    """ "N messages for N contacts (R resent after a failed status, M refused by the API,
    K opted out), double sends: 0": the messages the mock accepted, the contacts that got one,
    the second sends a failed status asked for (131000, or 131026 on a first attempt), those
    the API refused for good, those an opt-out stopped before their send, and the callback
    data it accepted more than once."""
    counts = progress.counts
    reached = sum(counts.get(state, 0) for state in REACHED)
    refused = counts.get(ContactState.SENDING_FAILED, 0) - opted_out
    resent = accepted - len({message.to for message in mock.state.accepted})
    duplicates = len(mock.state.duplicated_callback_data())
    return (
        f"{accepted} messages for {reached} contacts ({resent} resent after a failed status,"
        f" {refused} refused by the API, {opted_out} opted out), double sends: {duplicates}"
    )


@dataclass(frozen=True)
class Heard:
    """What the demo's users said: a reply to a message sent, a STOP from a contact still
    waiting (None: the campaign was over first), and when the webhook took the STOP."""

    reply_status: int
    stop_phone: str | None
    stop_stored_at: float  # epoch seconds, 0 without a STOP


async def listen_in(dsn: str, mock: RunningMock, campaign_id: int) -> Heard:
    """Once a few messages went out, the mock posts a reply to the first one and a STOP from
    the campaign's last contact not sent yet (through the signed webhook, like Meta). On a
    connection of its own: the progress display uses the demo's meanwhile."""
    while len(mock.state.accepted) < 5:
        await asyncio.sleep(0.02)
    first = mock.state.accepted[0]
    receipts = mock.receipts
    config = receipts.config
    reply = inbound_document(
        config.waba_id,
        DEMO_NUMBER_ID,
        config.display_phone_number,
        first.wa_id,
        "When does the offer end?",
        context=first.wamid,
    )
    status = await receipts.post_document(reply)
    conn = await connect(dsn)
    try:
        phone: str | None = await conn.fetchval(query("demo_pending_phone"), campaign_id)
    finally:
        await conn.close()
    if phone is None:
        return Heard(status, None, 0.0)
    stop = inbound_document(
        config.waba_id, DEMO_NUMBER_ID, config.display_phone_number, phone, "STOP"
    )
    await receipts.post_document(stop)
    return Heard(status, phone, time.time())


def listening_line(heard: Heard, row: dict[str, int], mock: RunningMock) -> str:
    """ "Listening: 1 reply, 1 opt-out (STOP from 447*******99: 1 contact stopped before its
    send, on the suppression list; messages to it after the STOP: 0)"."""
    replies = f"{row['replies']} repl{'y' if row['replies'] == 1 else 'ies'}"
    if heard.stop_phone is None:
        return f"Listening: {replies}, 0 opt-outs (the campaign was over before the STOP)"
    after = sum(
        1
        for m in mock.state.accepted
        if m.to.lstrip("+") == heard.stop_phone and m.accepted_at > heard.stop_stored_at
    )
    return (
        f"Listening: {replies}, {row['opt_outs']} opt-out{'' if row['opt_outs'] == 1 else 's'}"
        f" (STOP from {mask_phone(heard.stop_phone)}: {row['stopped']} contact stopped before"
        f" its send, {row['suppressed']} on the suppression list; messages to it after the"
        f" STOP: {after})"
    )


async def _set_window(
    conn: asyncpg.Connection, campaign_id: int, window: str, config: Config, out: TextIO
) -> None:
    """`--window`: the demo campaign's send window, each contact's interval computed now."""
    campaign = await update_planning(
        conn,
        campaign_id,
        PlanningChange(window=window),
        default_zone=config.planning.time_zone,
        now=datetime.now(UTC),
    )
    print(
        f"campaign {campaign_id}: send window {campaign.send_window} (recipients' local time)",
        file=out,
    )


async def _show_progress(
    conn: asyncpg.Connection,
    campaign_id: int,
    out: TextIO,
    daemon: asyncio.Task[int],
    *,
    windowed: bool = False,
) -> bool:
    """Live progress until every contact is final (True), the campaign stops, or every
    contact left waits for its send window (False)."""
    started = time.monotonic()
    pending = [s.value for s in PENDING_STATES]
    tty = out.isatty()
    last_line = 0.0
    while True:
        if daemon.done():
            daemon.result()  # raises the daemon's error
            raise RuntimeError("the daemon stopped before the campaign finished")
        row = await conn.fetchrow(query("demo_progress"), campaign_id, pending)
        if row["campaign_state"] not in ("running", "finished"):
            print(f"\ncampaign is {row['campaign_state']}: {row['pause_reason']}", file=out)
            return False
        total, left = row["total"], row["pending"]
        done = total - left
        elapsed = time.monotonic() - started
        line = (
            f"{progress_bar(done / total if total else 1)} {done}/{total} final"
            f"  {done / elapsed if elapsed else 0:6.0f}/s  {elapsed:5.1f}s"
        )
        if tty:
            print("\r" + line, end="", file=out, flush=True)
        elif elapsed - last_line >= 1.0 or left == 0:
            print(line, file=out, flush=True)
            last_line = elapsed
        if left == 0:
            if tty:
                print(file=out)
            return True
        waiting = await _window_waiting(conn, campaign_id) if windowed else None
        if waiting is not None and waiting[0] == left:
            opens = f"{waiting[1]:%Y-%m-%d %H:%M} UTC" if waiting[1] else "never"
            print(
                f"\n{left} contacts wait for their send window (the next opens {opens});"
                " the demo stops here",
                file=out,
            )
            return False
        await asyncio.sleep(0.2)


async def _window_waiting(
    conn: asyncpg.Connection, campaign_id: int
) -> tuple[int, datetime | None] | None:
    """Contacts of a windowed campaign outside their window, and when the next opens."""
    progress = await store.campaign_progress(conn, campaign_id)
    return progress.window_waiting


async def _wait_campaign_finished(
    conn: asyncpg.Connection, campaign_id: int, daemon: asyncio.Task[int], timeout_s: float
) -> None:
    """The daemon marks a campaign finished on its own check, up to a second after the last
    contact turned final; stopping it before then would leave the campaign running."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not daemon.done():
        campaign = await store.get_campaign(conn, campaign_id)
        if campaign.state is not CampaignState.RUNNING:
            return
        await asyncio.sleep(0.1)


async def _wait_receipts_applied(conn: asyncpg.Connection, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await pending_receipt_count(conn) == 0:
            return
        await asyncio.sleep(0.2)


def main_demo(
    config: Config, dsn: str, contacts: int, rate: float, *, window: str | None = None
) -> int:
    """`run_demo` to stdout, in its own event loop."""
    return asyncio.run(run_demo(config, dsn, contacts, rate, sys.stdout, window=window))
