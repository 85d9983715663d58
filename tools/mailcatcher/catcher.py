#!/usr/bin/env python3
"""A local SMTP server that keeps every message it receives as a file.

The region core's mailer sends real SMTP to it in `scripts/up.sh` and in
the end-to-end tests, which read the messages back from the directory.
Nothing is relayed anywhere.

    catcher.py --dir DIR [--port 0] [--host 127.0.0.1] [--refuse]

Prints exactly one line on stdout when it accepts connections:

    SMTP_PORT=NNNN

Each message becomes DIR/<n>-<time>.eml (the bytes received, with a
Return-Path and X-Envelope-To header naming the envelope), written to a
temporary name first and renamed, so a reader never sees half a message.
With --refuse it keeps nothing and refuses every message for good (a 554
answer to DATA, as a server that rejects the sender would), for tests of
what happens to mail the server will not take.
It stops on SIGTERM/SIGINT, and when its stdin is a pipe that closes (a
test harness that dies cannot leave it behind). Needs aiosmtpd
(scripts/mail-toolchain.sh installs it).
"""

import argparse
import asyncio
import itertools
import os
import signal
import stat
import sys
import time

from aiosmtpd.controller import Controller


class Keep:
    """aiosmtpd handler: every accepted message into the directory."""

    def __init__(self, directory, refuse=False):
        self.directory = directory
        self.refuse = refuse
        self.counter = itertools.count(1)

    async def handle_DATA(self, server, session, envelope):
        if self.refuse:
            return "554 5.7.1 Message refused (mail catcher started with --refuse)"
        n = next(self.counter)
        name = f"{n:06d}-{time.time_ns()}.eml"
        head = (
            f"Return-Path: <{envelope.mail_from}>\r\n"
            f"X-Envelope-To: {', '.join(envelope.rcpt_tos)}\r\n"
        ).encode()
        tmp = os.path.join(self.directory, f".{name}.tmp")
        with open(tmp, "wb") as f:
            f.write(head + envelope.original_content)
        os.rename(tmp, os.path.join(self.directory, name))
        return "250 Message accepted for delivery"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", required=True, help="where messages are kept")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument(
        "--refuse", action="store_true", help="refuse every message (554)"
    )
    args = parser.parse_args()
    os.makedirs(args.dir, exist_ok=True)

    port = args.port
    if port == 0:
        # aiosmtpd's Controller needs a concrete port: ask the kernel.
        import socket

        with socket.socket() as s:
            s.bind((args.host, 0))
            port = s.getsockname()[1]
    controller = Controller(
        Keep(args.dir, refuse=args.refuse),
        hostname=args.host,
        port=port,
        # Messages as sent (no decoding): the tests parse them.
        decode_data=False,
        data_size_limit=10 * 1024 * 1024,
    )
    controller.start()
    print(f"SMTP_PORT={port}", flush=True)

    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    def on_signal(*_):
        loop.call_soon_threadsafe(stop.set)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    async def watch_stdin():
        # Only a pipe or socket means a harness holds the other end.
        try:
            mode = os.fstat(0).st_mode
        except OSError:
            return
        if not (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)):
            return
        await loop.run_in_executor(None, sys.stdin.buffer.read)
        stop.set()

    async def run():
        watcher = asyncio.ensure_future(watch_stdin())
        await stop.wait()
        watcher.cancel()

    try:
        loop.run_until_complete(run())
    finally:
        controller.stop()
        # The stdin reader thread may still block; do not wait for it.
        os._exit(0)


if __name__ == "__main__":
    main()
