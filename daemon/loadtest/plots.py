"""The PNG of a report: throughput over time (every system), latency over time, and the
sender's CPU. matplotlib is imported here only, lazily, with the Agg backend (no display)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from daemon.loadtest.options import LoadtestError


def write_plot(report: dict[str, Any], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise LoadtestError("--plot needs matplotlib: pip install 'wa-sender[loadtest]'") from exc

    runs: dict[str, dict[str, Any]] = report["runs"]
    fig, (ax_rate, ax_latency, ax_cpu) = plt.subplots(3, 1, figsize=(11, 10), sharex=True)
    for name, run in runs.items():
        series = run["series"]
        t = series["t"]
        steps = {"drawstyle": "steps-post"}
        ax_rate.plot(t, series["sends_mock"], label=f"{name}: sends/s (mock)", **steps)
        if "sends_db" in series and name == "wa-sender":
            ax_rate.plot(
                t, series["sends_db"], linestyle=":", label=f"{name}: sent/s (db)", **steps
            )
        if "receipts_applied" in series:
            ax_rate.plot(
                t, series["receipts_applied"], label=f"{name}: receipts applied/s", **steps
            )
        send = series.get("send_latency_ms", {})
        if any(v is not None for v in send.get("p50", [])):
            ax_latency.plot(t, _gaps(send["p50"]), label=f"{name}: send p50")
            ax_latency.plot(t, _gaps(send["p99"]), linestyle="--", label=f"{name}: send p99")
        claim = series.get("claim_to_send_ms", {})
        if name == "wa-sender" and any(v is not None for v in claim.get("p50", [])):
            ax_latency.plot(t, _gaps(claim["p50"]), label=f"{name}: claim->send p50")
            ax_latency.plot(
                t, _gaps(claim["p99"]), linestyle="--", label=f"{name}: claim->send p99"
            )
        cpu = run["resources"].get("sender", {}).get("series", {})
        if cpu.get("t"):
            ax_cpu.plot(cpu["t"], cpu["cpu_pct"], label=f"{name}: sender CPU %")
        mock_cpu = run["resources"].get("mock", {}).get("series", {})
        if mock_cpu.get("t") and name == "wa-sender":
            ax_cpu.plot(mock_cpu["t"], mock_cpu["cpu_pct"], linestyle=":", label="mock CPU %")
        for kill in run.get("chaos", {}).get("kill_times_s", []):
            for ax in (ax_rate, ax_latency, ax_cpu):
                ax.axvline(kill, color="red", alpha=0.25, linewidth=0.8)
    ax_rate.set_ylabel("per second")
    ax_rate.set_title(_title(report))
    ax_latency.set_ylabel("ms")
    ax_latency.set_yscale("log")
    ax_cpu.set_ylabel("% of one core")
    ax_cpu.set_xlabel("seconds since start (red: SIGKILL)")
    for ax in (ax_rate, ax_latency, ax_cpu):
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="upper right", fontsize="small")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _gaps(values: list[float | None]) -> list[float]:
    return [float("nan") if v is None else v for v in values]


def _title(report: dict[str, Any]) -> str:
    from daemon.loadtest.report import scenario_line

    return scenario_line(report["scenario"]).removeprefix("loadtest: ")
