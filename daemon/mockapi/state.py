"""What the mock Cloud API has seen: accepted messages, outcome counters, runtime switches.

Accepted messages are stored column-wise (arrays and interned strings, the wamid derived from
the sequence number) so that half a million of them stay well under 100 MB.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from array import array
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple, overload

WAMID_PREFIX = "wamid."
# Real wamids are base64 of: 1C 18 <len> <recipient digits> 15 02 00 11 18 12 <18 hex> 00.
_HEAD = b"\x1c\x18"
_MIDDLE = b"\x15\x02\x00\x11\x18\x12"


class AcceptedMessage(NamedTuple):
    """One send the mock accepted, as ``GET /_mock/messages`` lists it."""

    seq: int
    wamid: str
    phone_number_id: str
    to: str
    wa_id: str
    biz_opaque_callback_data: str | None
    template: str
    accepted_at: float
    """Epoch seconds."""
    accepted_monotonic: float
    """The event loop clock, for latencies measured in the same process."""

    def as_json(self) -> dict[str, Any]:
        """The message as a JSON-able dict."""
        return self._asdict()


def wa_id_of(to: str) -> str:
    """WhatsApp's canonical id for a recipient as sent: its digits (``+1-631…`` -> ``1631…``)."""
    if to.isascii() and to.isdigit():  # already canonical: the common case, without a loop
        return to
    digits = "".join(ch for ch in to if ch.isdigit() and ch.isascii())
    return digits or to


class WamidFactory:
    """Unique, realistic wamids that encode the recipient and a per-mock sequence number."""

    def __init__(self, instance: int | None = None) -> None:
        self.instance = secrets.randbits(32) if instance is None else instance & 0xFFFFFFFF
        self._instance_hex = f"{self.instance:08X}".encode()

    def make(self, wa_id: str, seq: int) -> str:
        """The wamid of accepted message ``seq`` to ``wa_id``."""
        phone = (wa_id.encode("ascii", "ignore") or b"0")[:64]
        raw = (
            _HEAD
            + bytes((len(phone),))
            + phone
            + _MIDDLE
            + self._instance_hex
            + f"{seq:010X}".encode()
            + b"\x00"
        )
        return WAMID_PREFIX + binascii.b2a_base64(raw, newline=False).decode("ascii")

    def seq_of(self, wamid: str) -> int | None:
        """The sequence number of a wamid this factory made, else None."""
        if not wamid.startswith(WAMID_PREFIX):
            return None
        try:
            raw = base64.b64decode(wamid[len(WAMID_PREFIX) :], validate=True)
        except (binascii.Error, ValueError):
            return None
        if len(raw) < 3 or raw[:2] != _HEAD:
            return None
        tail = raw[3 + raw[2] :]
        if len(tail) != 25 or tail[:6] != _MIDDLE or tail[6:14] != self._instance_hex:
            return None
        try:
            return int(tail[14:24], 16)
        except ValueError:
            return None


class _Interned:
    """Small table of repeated strings (phone number ids, template names) -> index."""

    def __init__(self) -> None:
        self.values: list[str] = []
        self._index: dict[str, int] = {}

    def index(self, value: str) -> int:
        idx = self._index.get(value)
        if idx is None:
            idx = self._index[value] = len(self.values)
            self.values.append(value)
        return idx


class MessageLog(Sequence[AcceptedMessage]):
    """Every accepted message, in acceptance order (``seq`` is the index)."""

    def __init__(self, wamids: WamidFactory) -> None:
        self._wamids = wamids
        self._phone_ids = _Interned()
        self._templates = _Interned()
        self._phone_idx = array("I")
        self._template_idx = array("I")
        self._to: list[str] = []
        self._callback: list[str | None] = []
        self._at = array("d")
        self._mono = array("d")

    def append(
        self,
        phone_number_id: str,
        to: str,
        callback: str | None,
        template: str,
        at: float,
        mono: float,
    ) -> AcceptedMessage:
        """Record one accepted message; it as stored, with its sequence number and wamid."""
        seq = len(self._to)
        self._phone_idx.append(self._phone_ids.index(phone_number_id))
        self._template_idx.append(self._templates.index(template))
        self._to.append(to)
        self._callback.append(callback)
        self._at.append(at)
        self._mono.append(mono)
        return self._record(seq)

    def __len__(self) -> int:
        return len(self._to)

    @overload
    def __getitem__(self, index: int) -> AcceptedMessage: ...

    @overload
    def __getitem__(self, index: slice) -> list[AcceptedMessage]: ...

    def __getitem__(self, index: int | slice) -> AcceptedMessage | list[AcceptedMessage]:
        if isinstance(index, slice):
            return [self._record(i) for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        return self._record(index)

    def __iter__(self) -> Iterator[AcceptedMessage]:
        for seq in range(len(self)):
            yield self._record(seq)

    def _record(self, seq: int) -> AcceptedMessage:
        to = self._to[seq]
        wa_id = wa_id_of(to)
        return AcceptedMessage(
            seq=seq,
            wamid=self._wamids.make(wa_id, seq),
            phone_number_id=self._phone_ids.values[self._phone_idx[seq]],
            to=to,
            wa_id=wa_id,
            biz_opaque_callback_data=self._callback[seq],
            template=self._templates.values[self._template_idx[seq]],
            accepted_at=self._at[seq],
            accepted_monotonic=self._mono[seq],
        )

    def find(self, wamid: str) -> AcceptedMessage | None:
        """The accepted message with this wamid, or None."""
        seq = self._wamids.seq_of(wamid)
        if seq is None or seq >= len(self):
            return None
        return self._record(seq)

    def count_by_callback_data(self) -> Counter[str]:
        """How many accepted messages carried each biz_opaque_callback_data (None skipped)."""
        return Counter(cb for cb in self._callback if cb is not None)


class UploadedFile(NamedTuple):
    """One media upload the mock accepted."""

    phone_number_id: str
    filename: str
    mime_type: str
    size: int


class MockState:
    """Counters, accepted messages and runtime switches of one mock instance."""

    def __init__(self, forced_errors: dict[str, int] | None = None) -> None:
        self.wamids = WamidFactory()
        self.accepted = MessageLog(self.wamids)
        self.outcomes: Counter[str] = Counter()
        self.errors_by_code: Counter[int] = Counter()
        self.accepted_per_second: Counter[int] = Counter()
        # Kept as messages arrive: /_mock/stats is polled during a run, and counting the
        # whole log on every poll grows with the run.
        self.accepted_by_number: Counter[str] = Counter()
        # Runtime switches (POST /_mock/control, or these attributes in-process).
        self.fail_all_code: int | None = None
        self.forced_errors: dict[str, int] = dict(forced_errors or {})
        # Media uploads (POST /{phone_number_id}/media): how many per number, and each id.
        self.uploads: Counter[str] = Counter()
        self.media: dict[str, UploadedFile] = {}
        # Accepted bodies as sent, when MockConfig.record_bodies (tests): (endpoint, number, body).
        self.bodies: list[tuple[str, str, dict[str, Any]]] = []
        self.accepted_by_endpoint: Counter[str] = Counter()

    @property
    def requests(self) -> int:
        """How many send requests arrived."""
        return self.outcomes["requests"]

    def count_by_callback_data(self) -> Counter[str]:
        """How many accepted messages carried each callback data."""
        return self.accepted.count_by_callback_data()

    def duplicated_callback_data(self) -> dict[str, int]:
        """Callback data accepted more than once: the double sends of a harness run."""
        return {cb: n for cb, n in self.count_by_callback_data().items() if n > 1}

    def set_fail_all(self, code: int | None) -> None:
        """Answer every send with error ``code`` from now on (None: back to normal)."""
        self.fail_all_code = code

    def force_error(self, to: str, code: int | None) -> None:
        """Answer sends to ``to`` with error ``code`` (None removes the trigger)."""
        if code is None:
            self.forced_errors.pop(to, None)
        else:
            self.forced_errors[to] = code

    def record_accepted(
        self,
        phone_number_id: str,
        to: str,
        callback: str | None,
        template: str,
        at: float,
        mono: float,
    ) -> AcceptedMessage:
        """Count and log one accepted message."""
        self.outcomes["accepted"] += 1
        self.accepted_per_second[int(at)] += 1
        self.accepted_by_number[phone_number_id] += 1
        return self.accepted.append(phone_number_id, to, callback, template, at, mono)

    def record_error(self, code: int) -> None:
        """Count one send answered with error ``code``."""
        self.outcomes["errors"] += 1
        self.errors_by_code[code] += 1

    def stats(self) -> dict[str, Any]:
        """JSON-able counters, per-number totals and the per-second accepted histogram."""
        return {
            "requests": self.outcomes["requests"],
            "accepted": self.outcomes["accepted"],
            "outcomes": dict(self.outcomes),
            "errors_by_code": {str(code): n for code, n in sorted(self.errors_by_code.items())},
            "accepted_by_phone_number_id": dict(self.accepted_by_number),
            "accepted_per_second": [
                [second, n] for second, n in sorted(self.accepted_per_second.items())
            ],
            "fail_all_code": self.fail_all_code,
            "forced_errors": dict(self.forced_errors),
            "uploads_by_phone_number_id": dict(self.uploads),
            "accepted_by_endpoint": dict(self.accepted_by_endpoint),
        }
