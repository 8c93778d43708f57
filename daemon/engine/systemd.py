"""sd_notify without libsystemd: datagrams to $NOTIFY_SOCKET (READY, STATUS, WATCHDOG, STOPPING)."""

from __future__ import annotations

import os
import socket


class SystemdNotifier:
    """Talks to systemd when it started us (NOTIFY_SOCKET set); else every call does nothing."""

    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        self._address = "\0" + address[1:] if address.startswith("@") else address
        watchdog_usec = env.get("WATCHDOG_USEC", "")
        watchdog_pid = env.get("WATCHDOG_PID", "")
        enabled = watchdog_usec.isdigit() and (not watchdog_pid or watchdog_pid == str(os.getpid()))
        self.watchdog_interval_s: float | None = int(watchdog_usec) / 2e6 if enabled else None
        self._socket: socket.socket | None = None
        if self._address:
            self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    @property
    def enabled(self) -> bool:
        """Whether there is a systemd to notify."""
        return self._socket is not None

    def notify(self, *lines: str) -> None:
        """Send these KEY=VALUE lines (errors are ignored)."""
        if self._socket is None:
            return
        try:
            self._socket.sendto("\n".join(lines).encode(), self._address)
        except OSError:
            pass  # systemd gone or socket full: never let notification break the daemon

    def ready(self, status: str = "") -> None:
        """READY=1, with a status line."""
        self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def status(self, text: str) -> None:
        """STATUS=text."""
        self.notify(f"STATUS={text}")

    def watchdog(self) -> None:
        """WATCHDOG=1: the daemon is alive."""
        self.notify("WATCHDOG=1")

    def stopping(self) -> None:
        """STOPPING=1."""
        self.notify("STOPPING=1")

    def close(self) -> None:
        """Close the socket."""
        if self._socket is not None:
            self._socket.close()
            self._socket = None
