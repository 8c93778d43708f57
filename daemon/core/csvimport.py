"""Parse a contacts CSV, line by line, into rows to import and rows to reject with a reason.

Pure: takes the file's lines (decoded; `db.csvsource` reads and decodes the file). Checks that
need every row or the database (a phone twice in the file, already in the campaign,
suppressed) are made by the importer's SQL on top of this result, so that memory does not
grow with the file.

The dialect is RFC 4180 (Excel's): fields quoted with `"`, a quote inside doubled, delimiters
and newlines allowed inside quotes. Only the delimiter is detected, from the header line
(`,`, `;` or tab, whichever it holds most of outside quotes); csv.Sniffer is not used, because
it guesses quoting too and guesses it wrong (`"Anna ""Nan"" Smith, Jr."` split in two).
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, NamedTuple

from daemon.core.phones import InvalidPhone, parse_phone
from daemon.core.template_check import RowCheck, RowChecker

PHONE_HEADERS = ("phone", "guest phone number")
DELIMITERS = (",", ";", "\t")
NUL_REASON = "nul_character"
"""A NUL byte in a cell: PostgreSQL text cannot hold it, Meta would refuse it."""
_NUL_SHOWN = "\ufffd"  # what an invalid record keeps in place of the NUL


class CsvFormatError(ValueError):
    """The file as a whole cannot be read as a contacts CSV."""


class ContactRow(NamedTuple):
    """One data row of a contacts CSV: the phone, its parameter values, why it is invalid (None
    when valid), a note to count, and the number's region and time zone when valid."""

    line: int  # 1-based line of the row in the file, header is line 1
    phone: str  # E.164 digits without "+" when valid, as written when invalid
    params: dict[str, str]
    invalid_reason: str | None = None
    note: str | None = None  # counted, not a reason: e.g. language_fallback
    region: str | None = None
    time_zone: str | None = None


def missing_parameter_check(params: dict[str, str]) -> RowCheck:
    """The check of a campaign without template binding: every parameter non-empty."""
    return RowCheck(params, "missing_parameter" if "" in params.values() else None)


def detect_delimiter(header_line: str) -> str:
    """The delimiter the header line uses most outside quotes (`,` when it has none)."""
    counts = dict.fromkeys(DELIMITERS, 0)
    quoted = False
    for char in header_line:
        if char == '"':
            quoted = not quoted
        elif not quoted and char in counts:
            counts[char] += 1
    best = max(DELIMITERS, key=lambda d: counts[d])
    return best if counts[best] else ","


def _column(header: Sequence[str], normalised: Sequence[str], column: str) -> int | None:
    if column in header:
        return list(header).index(column)
    if column.strip().lower() in normalised:
        return list(normalised).index(column.strip().lower())
    return None


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
        index = _column(header, normalised, column)
        if index is None:
            missing.append(column)
        else:
            columns[column] = index
    if missing:
        raise CsvFormatError(
            f"{origin}: missing template parameter column(s): {', '.join(missing)}"
        )
    for column in optional_columns:
        index = _column(header, normalised, column)
        if index is not None:
            columns[column] = index
    return phone_index, columns


def iter_contacts(
    lines: Iterable[str],
    param_columns: Sequence[str],
    origin: str = "file",
    *,
    optional_columns: Sequence[str] = (),
    check: RowChecker = missing_parameter_check,
    default_region: str | None = None,
) -> Iterator[ContactRow]:
    """Every data row, in file order, valid or with its reason. `lines` are the file's lines
    with their line ends (a file opened with newline=""). Header problems raise CsvFormatError
    before the first row is yielded. `param_columns` must be in the header, `optional_columns`
    are read when they are; `check` is the per-row template check
    (`core.template_check.row_checker`); national numbers are read in `default_region`."""
    source = iter(lines)
    first = next(source, None)
    if first is None or not first.strip():
        raise CsvFormatError(f"{origin}: empty file (no header row)")
    delimiter = detect_delimiter(first)
    reader = csv.reader(_chain(first, source), csv.excel, delimiter=delimiter)
    try:
        header = next(reader)
    except csv.Error as exc:
        raise CsvFormatError(f"{origin}: not a valid CSV: {exc}") from None
    phone_index, columns = _header_index(header, param_columns, origin, optional_columns)
    return _rows(reader, phone_index, columns, origin, check, default_region)


def _chain(first: str, rest: Iterator[str]) -> Iterator[str]:
    yield first
    yield from rest


def _rows(
    reader: Any,  # a csv reader: line_num is the last line it read
    phone_index: int,
    columns: dict[str, int],
    origin: str,
    check: RowChecker,
    default_region: str | None,
) -> Iterator[ContactRow]:
    names = list(columns)
    indexes = list(columns.values())
    width = max([phone_index, *indexes]) + 1
    line = last = 1
    try:
        for record in reader:
            # A record starts on the line after the previous one ended (quoted cells may hold
            # line ends, so a record can span several lines).
            line, last = last + 1, reader.line_num
            if len(record) < width:
                if not record or all(not cell.strip() for cell in record):
                    continue  # blank lines are not rows
                record = record + [""] * (width - len(record))
            raw_phone = record[phone_index].strip()
            params = dict(zip(names, [record[i].strip() for i in indexes], strict=True))
            if "\x00" in raw_phone or any("\x00" in v for v in params.values()):
                shown = {k: v.replace("\x00", _NUL_SHOWN) for k, v in params.items()}
                yield ContactRow(line, raw_phone.replace("\x00", _NUL_SHOWN), shown, NUL_REASON)
                continue
            try:
                phone = parse_phone(raw_phone, default_region)
            except InvalidPhone as exc:
                yield ContactRow(line, raw_phone, params, exc.reason)
                continue
            # The one per-row template check: missing values, Meta's text rules, limits.
            checked, reason, note = check(params)
            yield ContactRow(
                line, phone.digits, checked, reason, note, phone.region, phone.time_zone
            )
    except csv.Error as exc:
        raise CsvFormatError(f"{origin}: not a valid CSV near line {last + 1}: {exc}") from None
