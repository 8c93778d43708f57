"""The floor: the most this machine pushes through the mock, with no database at all.

A bare aiohttp loop posts the same bodies as the daemon (built per request with the same
payload functions, the same generated contacts and callback data), over the daemon's own
session settings (`api_session`: connection limit, timeout, headers) with the same number of
requests in flight. Anything the daemon
does beyond this (claiming, pacing, classifying, recording) shows up as the gap to the floor.
It runs as its own process, measured exactly like the daemon.

    python -m daemon.loadtest.floor --base-url URL --contacts N [--numbers K] ...
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Iterator, Sequence

import aiohttp
from yarl import URL

from daemon.core.payload import build_template_message, encode_body, encode_callback_data
from daemon.engine import eventloop
from daemon.loadtest.latency import SecondlyRecorder
from daemon.loadtest.options import add_measured_arguments
from daemon.loadtest.seeding import (
    TEMPLATE,
    params_for,
    phone_for,
    phone_number_ids,
    split_evenly,
)
from daemon.whatsapp.client import api_session

API_VERSION = "v23.0"
MAX_TRIES = 20
TOKEN_ENV = "WA_SENDER_WHATSAPP_ACCESS_TOKEN"


def work_items(contacts: int, numbers: int) -> Iterator[tuple[str, int, int, int]]:
    """(phone_number_id, campaign_id, contact_id, index), the numbers interleaved.

    Campaign k+1 owns the k-th share of the contacts and contact ids run from 1, as in a
    freshly seeded database."""
    sizes = split_evenly(contacts, numbers)
    starts = [sum(sizes[:k]) for k in range(numbers)]
    ids = phone_number_ids(numbers)
    for i in range(max(sizes, default=0)):
        for k in range(numbers):
            if i < sizes[k]:
                index = starts[k] + i
                yield ids[k], k + 1, index + 1, index


async def push(
    base_url: str,
    token: str,
    contacts: int,
    numbers: int,
    concurrency: int,
    max_connections: int,
    timeout_s: float,
    recorder: SecondlyRecorder,
) -> dict[str, int]:
    counts = {"accepted": 0, "requests": 0, "errors": 0, "gave_up": 0}
    items = work_items(contacts, numbers)
    prefix = f"{base_url.rstrip('/')}/{API_VERSION}/"
    urls = {number: URL(f"{prefix}{number}/messages") for number in phone_number_ids(numbers)}
    async with api_session(token, timeout_s=timeout_s, max_connections=max_connections) as session:

        async def worker() -> None:
            for number, campaign_id, contact_id, index in items:
                callback = encode_callback_data(campaign_id, contact_id, 1)
                body = encode_body(
                    build_template_message(TEMPLATE, phone_for(index), params_for(index), callback)
                )
                url = urls[number]
                for _ in range(MAX_TRIES):
                    counts["requests"] += 1
                    started = time.monotonic()
                    try:
                        async with session.post(url, data=body) as response:
                            await response.read()
                            status = response.status
                    except (aiohttp.ClientError, TimeoutError, OSError):
                        status = 0
                    recorder.observe((time.monotonic() - started) * 1000.0, time.time())
                    if status == 200:
                        counts["accepted"] += 1
                        break
                    counts["errors"] += 1
                    if status == 429:
                        await asyncio.sleep(0.05)
                else:
                    counts["gave_up"] += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return counts


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m daemon.loadtest.floor")
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--contacts", type=int, required=True)
    parser.add_argument("--numbers", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=64)
    add_measured_arguments(parser)
    args = parser.parse_args(argv)
    token = os.environ.get(TOKEN_ENV, "test-token")
    out = args.latency_out.open("a", encoding="utf-8") if args.latency_out else None
    recorder = SecondlyRecorder(out)
    started = time.time()
    try:
        counts = eventloop.run(
            push(
                args.base_url,
                token,
                args.contacts,
                args.numbers,
                args.concurrency,
                args.max_connections,
                args.request_timeout_s,
                recorder,
            ),
            args.event_loop,
        )
    finally:
        recorder.close()
        if out is not None:
            out.close()
    result = {**counts, "started_at": started, "finished_at": time.time()}
    text = json.dumps(result)
    if args.result:
        args.result.write_text(text + "\n", encoding="utf-8")
    else:
        print(text)
    return 0 if counts["gave_up"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
