"""Parse a contacts CSV into rows to import and rows to reject, with a reason each.

Pure: takes the file's text. Checks that need the database (already in the campaign,
suppressed) are applied by the store on top of this result.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from daemon.core.phones import InvalidPhone, normalize_phone

PHONE_HEADERS = ("phone", "guest phone number")


class CsvFormatError(ValueError):
    """The file as a whole cannot be read as a contacts CSV."""


@dataclass(frozen=True)
class ContactRow:
    """One data row of a contacts CSV: the phone, its parameter values, and why it is invalid (None
    when valid)."""

    line: int  # 1-based line of the row in the file, header is line 1
    phone: str  # normalised when valid, as written when invalid
    params: dict[str, str]
    invalid_reason: str | None = None


def decode_csv_bytes(data: bytes, origin: str) -> str:
    """The file's text (UTF-8, a BOM allowed); CsvFormatError for binary or non-UTF-8 content."""
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


def iter_contacts(
    text: str, param_columns: Sequence[str], origin: str = "file"
) -> Iterator[ContactRow]:
    """Every data row, in file order, valid or with its reason (a repeated phone: the first
    one wins). Header problems raise CsvFormatError before the first row is yielded."""
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
    return _rows(reader, phone_index, columns, origin)


def _rows(
    reader: Any, phone_index: int, columns: dict[str, int], origin: str
) -> Iterator[ContactRow]:
    seen: set[str] = set()
    names = list(columns)
    indexes = list(columns.values())
    width = max([phone_index, *indexes]) + 1
    line = 1
    try:
        for record in reader:
            line = reader.line_num
            if len(record) < width:
                if not record or all(not cell.strip() for cell in record):
                    continue  # blank lines are not rows
                record = record + [""] * (width - len(record))
            raw_phone = record[phone_index].strip()
            values = [record[i].strip() for i in indexes]
            params = dict(zip(names, values, strict=True))
            reason: str | None = None
            try:
                phone = normalize_phone(raw_phone)
            except InvalidPhone as exc:
                phone, reason = raw_phone, exc.reason
            else:
                if "" in values:
                    reason = "missing_parameter"
                elif phone in seen:
                    reason = "duplicate_phone"
                else:
                    seen.add(phone)
            yield ContactRow(line, phone, params, reason)
    except csv.Error as exc:
        raise CsvFormatError(f"{origin}: not a valid CSV near line {line + 1}: {exc}") from None
