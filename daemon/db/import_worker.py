"""The import's parse in a process of its own (large files): it reads the file, parses it as
the importer does in-process (`core.csvimport.iter_contacts`), and sends the rows back in
chunks already written as COPY text, so that the importing process only COPies them while
PostgreSQL applies the chunk before. Parse, COPY and apply then run on different cores.

The pipe between the two is the back-pressure: the worker is at most one chunk ahead, so
neither process holds more than a couple of chunks, whatever the file's size.
"""

from __future__ import annotations

import json
import multiprocessing
import resource
import traceback
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from daemon.core.csvimport import ContactRow, CsvFormatError, iter_contacts
from daemon.core.template_check import row_checker
from daemon.core.template_spec import CampaignTemplate
from daemon.db.csvsource import open_csv
from daemon.db.pool import JsonText
from daemon.errors import ImportFileError

_NULL = "\\N"
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


@dataclass(frozen=True)
class ParseJob:
    """What the worker needs to parse the file as the importer would."""

    path: Path
    encoding: str | None
    spec: CampaignTemplate
    required: Sequence[str]
    optional: Sequence[str]
    default_region: str | None
    chunk_rows: int


def staged_rows(rows: Iterator[ContactRow]) -> Iterator[tuple[Any, ...]]:
    """The staging table's columns of each parsed row, the params as JSON text."""
    escape = json.encoder.encode_basestring
    for line, phone, params, reason, note, region, zone in rows:
        text = "{" + ",".join(f"{escape(k)}:{escape(v)}" for k, v in params.items()) + "}"
        yield line, phone, JsonText(text), reason, note, region, zone


def copy_text(rows: Sequence[tuple[Any, ...]]) -> bytes:
    """Staged rows (line, phone, params JSON, reason, note, region, zone) as COPY text."""
    escapes = _COPY_ESCAPES
    out = []
    for line, phone, params, reason, note, region, zone in rows:
        out.append(
            f"{line}\t{phone.translate(escapes)}\t{params.translate(escapes)}\t"
            f"{_NULL if reason is None else reason.translate(escapes)}\t"
            f"{_NULL if note is None else note}\t{_NULL if region is None else region}\t"
            f"{_NULL if zone is None else zone}\n"
        )
    return "".join(out).encode("utf-8")


def run(job: ParseJob, pipe: Connection) -> None:
    """The worker's body: ("rows", COPY text, bytes read, rows so far) per chunk, then
    ("done", file size, rows, its peak RSS in KiB); ("error", message) for a bad file,
    ("crash", traceback)."""
    try:
        source = open_csv(job.path, job.encoding)
        try:
            rows = iter_contacts(
                source.lines(),
                job.required,
                str(job.path),
                optional_columns=job.optional,
                check=row_checker(job.spec),
                default_region=job.default_region,
            )
            chunk: list[tuple[Any, ...]] = []
            n = 0
            for row in staged_rows(rows):
                chunk.append(row)
                if len(chunk) == job.chunk_rows:
                    n += len(chunk)
                    pipe.send(("rows", copy_text(chunk), source.bytes_read, n))
                    chunk = []
            n += len(chunk)
            if chunk:
                pipe.send(("rows", copy_text(chunk), source.bytes_read, n))
            peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            pipe.send(("done", source.size, n, peak_kb))
        finally:
            source.close()
    except (ImportFileError, CsvFormatError) as exc:
        pipe.send(("error", str(exc)))
    except BaseException:
        pipe.send(("crash", traceback.format_exc()))
    finally:
        pipe.close()


def start(job: ParseJob) -> tuple[multiprocessing.process.BaseProcess, Connection]:
    """The worker started (forked where the platform can: no imports to redo), and the end
    of the pipe its chunks come from."""
    methods = multiprocessing.get_all_start_methods()
    context: Any = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=run, args=(job, sender), name="wa-sender-import", daemon=True)
    process.start()
    sender.close()
    return process, receiver
