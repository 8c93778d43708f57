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
from daemon.core.template_check import RowCheck, RowChecker

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
    note: str | None = None  # counted, not a reason: e.g. language_fallback


def missing_parameter_check(params: dict[str, str]) -> RowCheck:
    """The check of a campaign without template binding: every parameter non-empty."""
    return RowCheck(params, "missing_parameter" if "" in params.values() else None)


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
    header: Sequence[str],
    param_columns: Sequence[str],
    origin: str,
    optional_columns: Sequence[str] = (),
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
    for column in optional_columns:
        if column in header:
            columns[column] = list(header).index(column)
        elif column.strip().lower() in normalised:
            columns[column] = normalised.index(column.strip().lower())
    return phone_index, columns


def iter_contacts(
    text: str,
    param_columns: Sequence[str],
    origin: str = "file",
    *,
    optional_columns: Sequence[str] = (),
    check: RowChecker = missing_parameter_check,
) -> Iterator[ContactRow]:
    """Every data row, in file order, valid or with its reason (a repeated phone: the first
    one wins). Header problems raise CsvFormatError before the first row is yielded.
    `param_columns` must be in the header, `optional_columns` are read when they are;
    `check` is the per-row template check (`core.template_check.row_checker`)."""
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
    phone_index, columns = _header_index(header, param_columns, origin, optional_columns)
    return _rows(reader, phone_index, columns, origin, check)


def _rows(
    reader: Any, phone_index: int, columns: dict[str, int], origin: str, check: RowChecker
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
            note: str | None = None
            try:
                phone = normalize_phone(raw_phone)
            except InvalidPhone as exc:
                phone, reason = raw_phone, exc.reason
            else:
                # The one per-row template check: missing values, Meta's text rules, limits.
                params, reason, note = check(params)
                if reason is None:
                    if phone in seen:
                        reason = "duplicate_phone"
                    else:
                        seen.add(phone)
            yield ContactRow(line, phone, params, reason, note)
    except csv.Error as exc:
        raise CsvFormatError(f"{origin}: not a valid CSV near line {line + 1}: {exc}") from None
