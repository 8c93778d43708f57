"""Loopback ports for child processes (daemons, the mock, the demo's webhook) to bind."""

from __future__ import annotations

import random
import socket
from pathlib import Path

__all__ = ["free_port"]

_HANDED_OUT: set[int] = set()
_FALLBACK_RANGE = (20000, 32000)


def _ephemeral_range() -> tuple[int, int]:
    """The kernel's range for outgoing connections' local ports (Linux), else a common default."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def free_port(host: str = "127.0.0.1") -> int:
    """A port free right now on ``host`` (the child binds it a moment later).

    Chosen below the kernel's ephemeral range, so no outgoing connection (the mock's webhook
    POSTs, a pool's connections) can take it between now and the child's bind, and never
    handed out twice by this process."""
    low, _ = _ephemeral_range()
    start, stop_at = _FALLBACK_RANGE
    stop_at = min(stop_at, low) if low > start + 1000 else stop_at
    for _ in range(200):
        port = random.randrange(start, stop_at)
        if port in _HANDED_OUT:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
        _HANDED_OUT.add(port)
        return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        chosen: int = sock.getsockname()[1]
        return chosen
