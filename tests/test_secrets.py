"""No secret reaches any output: the daemon as a real process at debug level, on a database
role with a password (checked by the server: scram on the embedded one), with its access
token, app secret and verify token; every secret is looked for in `ps`, /proc/PID/cmdline,
stdout and stderr (separately), /metrics, /healthz, /readyz, the webhook's answers, every
--json output of the CLI and its error messages."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import aiohttp
import asyncpg
import pytest

from daemon.core.states import CampaignCommand
from daemon.db.campaigns import change_campaign_state
from daemon.loadtest.processes import free_port
from daemon.mockapi.config import FaultConfig, MockConfig
from daemon.mockapi.server import start_mock_server
from daemon.whatsapp.signature import SIGNATURE_HEADER, sign
from tests.helpers.daemon import wait_until_final
from tests.helpers.data import campaign_with_contacts, write_csv
from tests.helpers.ingress import signed_body
from tests.helpers.proc import REPO, daemon_env, stop_daemon

TOKEN = "tok-" + secrets.token_hex(12)
APP_SECRET = "app-" + secrets.token_hex(12)
VERIFY_TOKEN = "vfy-" + secrets.token_hex(12)
PASSWORD = "pw-" + secrets.token_hex(12)
SECRETS = {
    "access token": TOKEN,
    "app secret": APP_SECRET,
    "verify token": VERIFY_TOKEN,
    "database password": PASSWORD,
}


@dataclass
class PasswordDatabase:
    dsn: str
    role: str
    checked: bool  # the server refuses a wrong password (scram), not just trusts the role


@pytest.fixture
async def password_db(db_dsn: str, conn: asyncpg.Connection) -> AsyncIterator[PasswordDatabase]:
    """The test's database through a role of its own that logs in with PASSWORD."""
    role = "wa_secret_" + secrets.token_hex(4)
    await conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{PASSWORD}'")
    for grant in (
        f"GRANT ALL ON SCHEMA public TO {role}",
        f"GRANT ALL ON ALL TABLES IN SCHEMA public TO {role}",
        f"GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO {role}",
    ):
        await conn.execute(grant)
    hba: Path | None = None
    original = ""
    if not os.environ.get("DATABASE_URL"):  # the embedded server (trust): scram for this role
        hba = Path(await conn.fetchval("SHOW hba_file"))
        original = hba.read_text()
        hba.write_text(f"local all {role} scram-sha-256\n{original}")
        await conn.execute("SELECT pg_reload_conf()")
    parts = urlsplit(db_dsn)
    netloc = f"{role}:{quote(PASSWORD, safe='')}@{parts.netloc.rpartition('@')[2]}"
    try:
        yield PasswordDatabase(urlunsplit(parts._replace(netloc=netloc)), role, hba is not None)
    finally:
        if hba is not None:
            hba.write_text(original)
            await conn.execute("SELECT pg_reload_conf()")
        await conn.execute(f"DROP OWNED BY {role}")
        await conn.execute(f"DROP ROLE {role}")


def _wrong_password(dsn: str) -> str:
    return dsn.replace(quote(PASSWORD, safe=""), "not-" + PASSWORD[::-1])


class Outputs:
    """Everything collected, by where it came from."""

    def __init__(self) -> None:
        self.texts: dict[str, str] = {}

    def add(self, where: str, text: str | bytes) -> None:
        if isinstance(text, bytes):
            text = text.decode(errors="replace")
        self.texts[where] = self.texts.get(where, "") + text

    def leaks(self) -> list[str]:
        found = []
        for where, text in self.texts.items():
            for name, value in SECRETS.items():
                if value in text or quote(value, safe="") in text:
                    found.append(f"{name} in {where}")
        return found


def _cli(outputs: Outputs, env: dict[str, str], *args: str, expect_ok: bool = True) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "daemon", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        timeout=60,
    )
    label = " ".join(args[:3])
    outputs.add(f"`{label}` stdout", result.stdout)
    outputs.add(f"`{label}` stderr", result.stderr)
    assert (result.returncode == 0) is expect_ok, (args, result.stderr.decode()[-2000:])
    return result.stdout.decode()


async def _get(outputs: Outputs, session: aiohttp.ClientSession, url: str, where: str) -> int:
    async with session.get(url) as response:
        outputs.add(where, await response.read())
        outputs.add(where + " headers", str(dict(response.headers)))
        return response.status


async def test_no_secret_reaches_any_output(
    password_db: PasswordDatabase, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    outputs = Outputs()
    dsn = password_db.dsn
    if password_db.checked:  # the password is real: a wrong one is refused
        with pytest.raises(asyncpg.InvalidPasswordError):
            await asyncpg.connect(_wrong_password(dsn))
    cid = await campaign_with_contacts(conn, tmp_path, 200)
    port, metrics_port = free_port(), free_port()
    base = f"http://127.0.0.1:{port}"
    metrics_base = f"http://127.0.0.1:{metrics_port}"
    # Error paths log too: transient and permanent errors, timeouts, dropped connections.
    faults = FaultConfig(
        transient_rate=0.1, permanent_rate=0.05, timeout_rate=0.02, hang_s=2.5, drop_rate=0.02
    )
    async with start_mock_server(MockConfig(token=TOKEN, faults=faults)) as mock:
        env = daemon_env(
            dsn,
            mock.base_url,
            whatsapp_access_token=TOKEN,
            whatsapp_app_secret=APP_SECRET,
            whatsapp_verify_token=VERIFY_TOKEN,
            logging_level="debug",
            webhook_enabled="true",
            webhook_host="127.0.0.1",
            webhook_port=str(port),
            metrics_enabled="true",
            metrics_host="127.0.0.1",
            metrics_port=str(metrics_port),
        )
        stdout_path, stderr_path = tmp_path / "daemon.out", tmp_path / "daemon.err"
        with stdout_path.open("wb") as out, stderr_path.open("wb") as err:
            daemon = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "daemon", "run", cwd=REPO, env=env, stdout=out, stderr=err
            )
        try:
            async with aiohttp.ClientSession() as session:
                deadline = time.monotonic() + 30
                while True:
                    try:
                        if await _get(outputs, session, base + "/healthz", "/healthz") == 200:
                            break
                    except aiohttp.ClientError:
                        pass
                    assert time.monotonic() < deadline, stderr_path.read_text()[-2000:]
                    await asyncio.sleep(0.1)
                await change_campaign_state(conn, cid, CampaignCommand.START)
                ps = await asyncio.to_thread(
                    subprocess.run, ["ps", "-ww", "-eo", "pid,ppid,args"], capture_output=True
                )
                outputs.add("ps", ps.stdout)
                cmdline = Path(f"/proc/{daemon.pid}/cmdline")
                outputs.add("/proc/PID/cmdline", await asyncio.to_thread(cmdline.read_bytes))
                # Its connections cut under it: reconnects and their errors are logged.
                await conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1",
                    password_db.role,
                )
                await wait_until_final(conn, cid, timeout_s=90)
                assert await _get(outputs, session, base + "/readyz", "/readyz") == 200
                assert await _get(outputs, session, metrics_base + "/metrics", "/metrics") == 200
                for path in ("/healthz", "/readyz"):
                    assert await _get(outputs, session, metrics_base + path, path) == 200
                # The handshake, right and wrong, and posts signed, forged and unsigned.
                for token in (VERIFY_TOKEN, "guess"):
                    query = f"hub.mode=subscribe&hub.verify_token={token}&hub.challenge=42"
                    await _get(outputs, session, f"{base}/webhook?{query}", "handshake")
                body = signed_body("wamid.secret-test")
                for signature in (sign(body, APP_SECRET), "sha256=" + "0" * 64, None):
                    headers = {SIGNATURE_HEADER: signature} if signature else {}
                    async with session.post(base + "/webhook", data=body, headers=headers) as r:
                        outputs.add("webhook answers", await r.read())
                assert await _get(outputs, session, metrics_base + "/metrics", "/metrics") == 200
                for path in ("/healthz", "/readyz"):
                    assert await _get(outputs, session, metrics_base + path, path) == 200
        finally:
            assert await stop_daemon(daemon) == 0
        outputs.add("daemon stdout", stdout_path.read_bytes())
        outputs.add("daemon stderr", stderr_path.read_bytes())
    assert '"level": "debug"' in outputs.texts["daemon stdout"]  # it did log at debug level

    cli_env = {**env, "WA_SENDER_WEBHOOK_ENABLED": "false"}
    csv_path = write_csv(tmp_path / "more.csv", [("15559990001", "Ann"), ("x", "Bad")])
    _cli(outputs, cli_env, "campaign", "list", "--json")
    _cli(outputs, cli_env, "campaign", "status", str(cid), "--json")
    created = _cli(
        outputs, cli_env, "campaign", "create", "--name", "s", "--template", "t", "--language",
        "en", "--param", "first_name", "--phone-number-id", "1000001",
    )  # fmt: skip
    _cli(outputs, cli_env, "contacts", "import", created.split()[-1], str(csv_path), "--json")
    _cli(outputs, cli_env, "suppression", "list", "--json")
    _cli(outputs, cli_env, "report", "campaign_summary", "--campaign", str(cid), "--format", "json")
    # Error messages: a missing campaign, a refused password, no server, malformed URLs.
    _cli(outputs, cli_env, "campaign", "status", "999999", "--json", expect_ok=False)
    failing = [
        _wrong_password(dsn) if password_db.checked else None,
        f"postgresql://{password_db.role}:{PASSWORD}@127.0.0.1:1/db",
        f"postgresql://{password_db.role}:{PASSWORD}@127.0.0.1:notaport/db",
        f"postgresql://{password_db.role}:{PASSWORD}@[::1/db",
        f"host=127.0.0.1 port=1 user={password_db.role} password={PASSWORD}",
    ]
    for bad in filter(None, failing):
        _cli(outputs, {**cli_env, "DATABASE_URL": bad}, "campaign", "list", expect_ok=False)
        _cli(outputs, {**env, "DATABASE_URL": bad}, "run", expect_ok=False)
    # The daemon refusing bad configuration next to its secrets.
    _cli(outputs, {**env, "WA_SENDER_SENDER_RATE_PER_SECOND": "fast"}, "run", expect_ok=False)

    assert outputs.leaks() == []
    assert len(outputs.texts) >= 20


def test_a_config_never_shows_its_secrets_or_database_url() -> None:
    from daemon.config import load_config

    config = load_config(
        None,
        environ={
            "DATABASE_URL": f"postgresql://someone:{PASSWORD}@db.example/wa",
            "WA_SENDER_WHATSAPP_ACCESS_TOKEN": TOKEN,
            "WA_SENDER_WHATSAPP_APP_SECRET": APP_SECRET,
            "WA_SENDER_WHATSAPP_VERIFY_TOKEN": VERIFY_TOKEN,
        },
    )
    assert config.database.url.endswith("@db.example/wa")
    shown = f"{config!r} {config} {config.database!r} {config.whatsapp!r}"
    assert [name for name, value in SECRETS.items() if value in shown] == []
