"""A contacts file opened for streaming: its encoding found, its lines decoded as they are read,
how far the reading has got (for a progress bar). Never read whole: memory stays flat.

Encodings: UTF-8 with or without a BOM (the default), UTF-16 LE/BE with a BOM (Excel's and
Notepad's "Unicode text"), or any codec Python has, named by `--encoding` (cp1250, latin-1...).
A byte that does not decode is one line naming its byte offset, its line and `--encoding`.
"""

from __future__ import annotations

import codecs
import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Final

from daemon.errors import ImportFileError

_MAGIC: Final = (
    (b"PK\x03\x04", "a ZIP archive or an Excel workbook (.xlsx): save it as CSV"),
    (b"\xd0\xcf\x11\xe0", "an old Excel workbook (.xls): save it as CSV"),
    (b"%PDF", "a PDF document"),
    (b"\x89PNG", "a PNG image"),
    (b"\x1f\x8b", "a gzip archive: unpack it first"),
)
_READ_SIZE: Final = 1 << 20


@dataclass
class CsvSource:
    """An open contacts file: `lines()` decodes it lazily; `bytes_read` and `size` tell the
    progress."""

    path: Path
    encoding: str
    size: int
    _raw: BinaryIO = field(repr=False)
    _text: io.TextIOWrapper | None = field(default=None, repr=False)

    @property
    def bytes_read(self) -> int:
        """Bytes of the file read so far (ahead of the rows parsed by at most one buffer)."""
        return self._raw.tell() if not self._raw.closed else self.size

    def lines(self) -> Iterator[str]:
        """The file's lines with their line ends, decoded; ImportFileError at a byte that
        does not decode."""
        text = io.TextIOWrapper(self._raw, encoding=self.encoding, newline="")
        self._text = text
        try:
            yield from text
        except UnicodeDecodeError:
            raise ImportFileError(decode_error(self.path, self.encoding)) from None

    def close(self) -> None:
        """Close the file."""
        if self._text is not None:
            self._text.close()  # closes the raw file too
        self._raw.close()


def open_csv(path: Path, encoding: str | None = None) -> CsvSource:
    """Open `path` for streaming; ImportFileError (one line) when it is missing, binary, or its
    encoding unknown."""
    try:
        raw: BinaryIO = path.open("rb")
    except FileNotFoundError:
        raise ImportFileError(f"file not found: {path}") from None
    except IsADirectoryError:
        raise ImportFileError(f"{path} is a directory, not a CSV file") from None
    except PermissionError:
        raise ImportFileError(f"{path}: permission denied") from None
    head = raw.read(4096)
    raw.seek(0)
    try:
        chosen = _encoding(path, head, encoding)
    except ImportFileError:
        raw.close()
        raise
    return CsvSource(path, chosen, path.stat().st_size, raw)


def _encoding(path: Path, head: bytes, encoding: str | None) -> str:
    if encoding is not None:
        try:
            name = codecs.lookup(encoding).name
        except LookupError:
            raise ImportFileError(
                f"unknown encoding {encoding!r} (e.g. utf-8, cp1250, latin-1, utf-16)"
            ) from None
        return "utf-8-sig" if name == "utf-8" else name
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"  # the BOM says which byte order
    for magic, what in _MAGIC:
        if head.startswith(magic):
            raise ImportFileError(f"{path}: not a CSV file ({what})")
    if head.count(b"\x00") > len(head) // 8:
        # A NUL here and there is a bad cell (that row is refused); this many is no text.
        raise ImportFileError(
            f"{path}: not a CSV file (binary content; UTF-16 text needs its BOM, or "
            "--encoding utf-16-le)"
        )
    return "utf-8-sig"  # UTF-8, with or without its BOM


def decode_error(path: Path, encoding: str) -> str:
    """Where the file stops decoding in `encoding`: byte offset, line, and the option."""
    decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
    offset = 0
    lines = 1
    shown = encoding.replace("_", "-").removesuffix("-sig")
    with path.open("rb") as raw:
        while chunk := raw.read(_READ_SIZE):
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as exc:
                # exc.object is what the decoder held over from before plus this chunk.
                held = len(exc.object) - len(chunk)
                at = offset - held + exc.start
                lines += exc.object[: exc.start].count(b"\n")
                return (
                    f"{path}: not {shown} text: byte 0x{exc.object[exc.start]:02x} at offset "
                    f"{at} (line {lines}) does not decode; name the file's encoding with "
                    "--encoding (e.g. --encoding cp1250)"
                )
            lines += chunk.count(b"\n")
            offset += len(chunk)
    return f"{path}: not {shown} text; name the file's encoding with --encoding"
