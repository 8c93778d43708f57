"""Parse a contacts CSV into rows to import and rows to reject, with a reason each.

Pure: takes the file's text. Checks that need the database (already in the campaign,
suppressed) are applied by the store on top of this result.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from daemon.core.phones import InvalidPhone, normalize_phone

PHONE_HEADERS = ("phone", "guest phone number")


class CsvFormatError(ValueError):
    """The file as a whole cannot be read as a contacts CSV."""


@dataclass(frozen=True)
class ContactRow:
    line: int  # 1-based line of the row in the file, header is line 1
    phone: str  # normalised when valid, as written when invalid
    params: dict[str, str]
    invalid_reason: str | None = None


@dataclass
class ParsedContacts:
    valid: list[ContactRow] = field(default_factory=list)
    invalid: list[ContactRow] = field(default_factory=list)

    @property
    def total(self) -> int:
        return len(self.valid) + len(self.invalid)

    def reasons(self) -> Counter[str]:
        return Counter(row.invalid_reason or "" for row in self.invalid)


def decode_csv_bytes(data: bytes, origin: str) -> str:
    if b"\x00" in data[:4096]:
        raise CsvFormatError(f"{origin}: not a CSV file (binary content)")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CsvFormatError(
            f"{origin}: not UTF-8 text (invalid byte at offset {exc.start}); save it as UTF-8"
        ) from None


def _header_index(
    header: Sequence[str], param_columns: Sequence[str], origin: str
) -> tuple[int, dict[str, int]]:
    normalised = [h.strip().lower() for h in header]
    phone_index = next((normalised.index(h) for h in PHONE_HEADERS if h in normalised), None)
    if phone_index is None:
        raise CsvFormatError(
            f"{origin}: no phone column (expected a header named 'phone' or 'Guest phone number')"
        )
    columns: dict[str, int] = {}
    missing: list[str] = []
    for column in param_columns:
        if column in header:
            columns[column] = list(header).index(column)
        elif column.strip().lower() in normalised:
            columns[column] = normalised.index(column.strip().lower())
        else:
            missing.append(column)
    if missing:
        raise CsvFormatError(
            f"{origin}: missing template parameter column(s): {', '.join(missing)}"
        )
    return phone_index, columns


def parse_contacts(text: str, param_columns: Sequence[str], origin: str = "file") -> ParsedContacts:
    """Every data row lands in exactly one of `valid` or `invalid` (duplicates: first one wins)."""
    try:
        dialect: type[csv.Dialect] | csv.Dialect = csv.Sniffer().sniff(text[:8192], ",;\t")
    except csv.Error:
        dialect = csv.excel
    reader = csv.reader(io.StringIO(text, newline=""), dialect)
    try:
        header = next(reader)
    except StopIteration:
        raise CsvFormatError(f"{origin}: empty file (no header row)") from None
    except csv.Error as exc:
        raise CsvFormatError(f"{origin}: not a valid CSV: {exc}") from None
    phone_index, columns = _header_index(header, param_columns, origin)

    parsed = ParsedContacts()
    seen: set[str] = set()
    line = 1
    try:
        for record in reader:
            line = reader.line_num
            if not record or all(not cell.strip() for cell in record):
                continue  # blank lines are not rows
            raw_phone = record[phone_index].strip() if phone_index < len(record) else ""
            params = {
                name: (record[i].strip() if i < len(record) else "") for name, i in columns.items()
            }
            reason: str | None = None
            phone = raw_phone
            try:
                phone = normalize_phone(raw_phone)
            except InvalidPhone as exc:
                reason = exc.reason
            if reason is None and any(value == "" for value in params.values()):
                reason = "missing_parameter"
            if reason is None:
                if phone in seen:
                    reason = "duplicate_phone"
                else:
                    seen.add(phone)
            row = ContactRow(line, phone, params, reason)
            (parsed.invalid if reason else parsed.valid).append(row)
    except csv.Error as exc:
        raise CsvFormatError(f"{origin}: not a valid CSV near line {line + 1}: {exc}") from None
    return parsed
