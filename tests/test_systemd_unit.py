"""deploy/wa-sender.service: the keys the daemon relies on, `systemd-analyze verify` and
`security`, and that Python really runs under MemoryDenyWriteExecute."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from daemon.config import SECRET_KEYS, SenderConfig

ROOT = Path(__file__).resolve().parents[1]
UNIT = ROOT / "deploy" / "wa-sender.service"
EXEC_START = "/opt/wa-sender/.venv/bin/wa-sender --config /etc/wa-sender/config.toml run"
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
needs_systemd_analyze = pytest.mark.skipif(
    SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed"
)
# What `run` may spend after SIGTERM on top of sender.shutdown_timeout_s: the claim loop's
# stop (5 s) and closing the pool (10 s), see daemon/engine/service.py and db/pool.py.
SHUTDOWN_EXTRA_S = 5 + 10


def parse_unit(text: str) -> dict[str, list[tuple[str, str]]]:
    sections: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
            continue
        key, _, value = line.partition("=")
        current.append((key.strip(), value.strip()))
    return sections


def values(section: list[tuple[str, str]], key: str) -> list[str]:
    return [v for k, v in section if k == key]


def one(section: list[tuple[str, str]], key: str) -> str:
    found = values(section, key)
    assert len(found) == 1, f"{key}: {found}"
    return found[0]


UNIT_SECTIONS = parse_unit(UNIT.read_text())
SERVICE = UNIT_SECTIONS["Service"]


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("Type", "notify"),
        ("NotifyAccess", "main"),
        ("ExecStart", EXEC_START),
        ("WatchdogSec", "30"),
        ("Restart", "on-failure"),
        ("RestartSec", "5"),
        ("RestartForceExitStatus", "75"),
        ("MemoryMax", "1G"),
        ("User", "wa-sender"),
        ("EnvironmentFile", "-/etc/wa-sender/env"),
        ("StateDirectory", "wa-sender"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("NoNewPrivileges", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("ProtectKernelTunables", "yes"),
        ("ProtectKernelModules", "yes"),
        ("ProtectKernelLogs", "yes"),
        ("ProtectControlGroups", "yes"),
        ("RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6"),
        ("RestrictNamespaces", "yes"),
        ("LockPersonality", "yes"),
        ("MemoryDenyWriteExecute", "yes"),
        ("CapabilityBoundingSet", ""),
    ],
)
def test_service_key(key: str, expected: str) -> None:
    assert one(SERVICE, key) == expected


def test_system_call_filter_allows_system_services_only() -> None:
    assert values(SERVICE, "SystemCallFilter")[0] == "@system-service"


def test_stop_timeout_outlasts_the_daemons_own_shutdown() -> None:
    stop_s = int(one(SERVICE, "TimeoutStopSec"))
    assert stop_s > SenderConfig().shutdown_timeout_s + SHUTDOWN_EXTRA_S


def test_credentials_are_the_secrets_the_daemon_reads() -> None:
    """The daemon reads $CREDENTIALS_DIRECTORY/<name> for each secret key (daemon/config/loading.py)."""
    credentials = dict(v.split(":", 1) for v in values(SERVICE, "LoadCredential"))
    assert set(credentials) == {key for _, key in SECRET_KEYS}
    assert credentials == {name: f"/etc/wa-sender/credentials/{name}" for name in credentials}
    assert not any("TOKEN" in v or "SECRET" in v for v in values(SERVICE, "Environment"))


def test_installed_for_boot() -> None:
    assert one(UNIT_SECTIONS["Install"], "WantedBy") == "multi-user.target"


def _testable_copy(tmp_path: Path) -> Path:
    """The unit with ExecStart pointing at this venv's wa-sender: verify wants it to exist."""
    wa_sender = Path(sys.executable).parent / "wa-sender"
    assert wa_sender.exists(), wa_sender
    copy = tmp_path / UNIT.name
    copy.write_text(UNIT.read_text().replace("/opt/wa-sender/.venv/bin/wa-sender", str(wa_sender)))
    return copy


@needs_systemd_analyze
def test_systemd_analyze_verify(tmp_path: Path) -> None:
    assert SYSTEMD_ANALYZE is not None
    unit = _testable_copy(tmp_path)
    result = subprocess.run(
        [SYSTEMD_ANALYZE, "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    ours = [line for line in result.stderr.splitlines() if "wa-sender" in line]
    assert result.returncode == 0, result.stderr
    assert ours == []


def _systemd_version() -> int:
    assert SYSTEMD_ANALYZE is not None
    first = subprocess.run(
        [SYSTEMD_ANALYZE, "--version"], capture_output=True, text=True, timeout=30
    ).stdout
    match = re.search(r"systemd (\d+)", first)
    return int(match[1]) if match else 0


@needs_systemd_analyze
def test_systemd_analyze_security_exposure_is_low(tmp_path: Path) -> None:
    assert SYSTEMD_ANALYZE is not None
    if _systemd_version() < 250:
        pytest.skip("systemd-analyze security --offline needs systemd 250 or later")
    unit = _testable_copy(tmp_path)
    result = subprocess.run(
        [SYSTEMD_ANALYZE, "security", "--offline=yes", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    match = re.search(r"Overall exposure level for wa-sender\.service: ([\d.]+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match[1]) <= 2.0  # systemd rates 0-2 "OK"


# Linux 6.3+ PR_SET_MDWE with PR_MDWE_REFUSE_EXEC_GAIN is the kernel form of systemd's
# MemoryDenyWriteExecute (no writable+executable mapping, no making memory executable).
_MDWE_SCRIPT = """
import asyncio, ctypes, mmap, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(65, 1, 0, 0, 0) != 0:
    sys.exit(77)
try:
    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
except OSError:
    pass
else:
    sys.exit(78)

from aiohttp import ClientSession, web
from daemon.cli.main import build_parser
from daemon.db.pool import connect
from daemon.engine.metrics import Metrics, add_metrics_routes

build_parser()  # imports every command's module

async def main() -> None:
    conn = await connect(sys.argv[1])
    assert await conn.fetchval("SELECT '{\\"a\\": 1}'::jsonb") == {"a": 1}
    await conn.close()
    app = web.Application()
    add_metrics_routes(app, Metrics())
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    async with ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{port}/metrics") as response:
            assert response.status == 200
    await runner.cleanup()
    print("ok")

asyncio.run(main())
"""


async def test_python_runs_under_memory_deny_write_execute(db_dsn: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _MDWE_SCRIPT,
        db_dsn,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    if proc.returncode == 77:
        pytest.skip("this kernel has no PR_SET_MDWE (Linux 6.3+)")
    assert proc.returncode != 78, "PR_SET_MDWE did not refuse a writable+executable mapping"
    assert (proc.returncode, out.decode().strip()) == (0, "ok"), err.decode()
