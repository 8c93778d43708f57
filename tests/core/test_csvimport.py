"""CSV exactness: RFC 4180 quoting as Excel and Python write it, whatever the delimiter; a NUL
in a cell refuses that row only, with its line."""

from __future__ import annotations

import csv
import io

import pytest

from daemon.core.csvimport import NUL_REASON, ContactRow, detect_delimiter, iter_contacts

HARD = [
    'Anna "Nan" Smith, Jr.',
    "Smith; Jones",
    "two\nlines",
    "crlf\r\ninside",
    '"quoted"',
    "tab\there",
    "",
]


def _rows(text: str) -> list[ContactRow]:
    lines = io.StringIO(text, newline="")
    return list(iter_contacts(lines, ["name"], check=lambda p: (p, None, None)))  # type: ignore[arg-type,return-value]


@pytest.mark.parametrize("delimiter", [",", ";", "\t"])
@pytest.mark.parametrize("terminator", ["\r\n", "\n"])
def test_python_written_files_parse_exactly(delimiter: str, terminator: str) -> None:
    out = io.StringIO(newline="")
    writer = csv.writer(out, delimiter=delimiter, lineterminator=terminator)
    writer.writerow(["phone", "name"])
    for i, value in enumerate(HARD):
        writer.writerow([f"+44770000000{i}", value])
    rows = _rows(out.getvalue())
    assert [r.params["name"] for r in rows] == [v.strip() for v in HARD]
    assert [r.phone for r in rows] == [f"44770000000{i}" for i in range(len(HARD))]


def test_excel_written_file_parses_exactly() -> None:
    # As Excel saves "CSV UTF-8" with a semicolon list separator: every cell with a quote, a
    # separator or a line end quoted, quotes doubled, LF inside cells, CRLF between rows.
    text = (
        "phone;name\r\n"
        '+447700000001;"Anna ""Nan"" Smith, Jr."\r\n'
        '+447700000002;"Smith; Jones"\r\n'
        '+447700000003;"two\nlines"\r\n'
        "+447700000004;plain\r\n"
    )
    rows = _rows(text)
    assert [r.params["name"] for r in rows] == [
        'Anna "Nan" Smith, Jr.',
        "Smith; Jones",
        "two\nlines",
        "plain",
    ]
    assert [r.line for r in rows] == [2, 3, 4, 6]  # the third row spans lines 4 and 5


def test_the_sniffer_trap_is_not_fallen_into() -> None:
    # csv.Sniffer reads this header-and-one-row file as doublequote=False and splits the name.
    text = 'phone,name\n+447700000001,"Anna ""Nan"" Smith, Jr."\n'
    (row,) = _rows(text)
    assert row.params == {"name": 'Anna "Nan" Smith, Jr.'}
    assert row.invalid_reason is None


@pytest.mark.parametrize(
    ("header", "delimiter"),
    [
        ("phone,name", ","),
        ("phone;name", ";"),
        ("phone\tname", "\t"),
        ('"phone","name, full"', ","),
        ('"phone;x";"name"', ";"),
        ("phone", ","),
    ],
)
def test_delimiter_from_the_header(header: str, delimiter: str) -> None:
    assert detect_delimiter(header) == delimiter


def test_a_nul_in_a_cell_refuses_that_row_with_its_line() -> None:
    text = "phone,name\n+447700000001,Anna\n+447700000002,Bo\x00b\n+447700000003,Cy\n"
    rows = _rows(text)
    assert [(r.line, r.invalid_reason) for r in rows] == [(2, None), (3, NUL_REASON), (4, None)]
    assert "\x00" not in rows[1].params["name"]
