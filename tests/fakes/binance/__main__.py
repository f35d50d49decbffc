"""`python -m tests.fakes.binance [--host 127.0.0.1] [--port 0]`: serve a fake until SIGTERM/SIGINT.

Prints one JSON line with the URLs and credentials so a parent process can read them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys

from tests.fakes.binance.server import FakeBinance


async def _main(host: str, port: int, stream_interval: float | None) -> None:
    fake = FakeBinance(host=host, port=port, stream_interval=stream_interval)
    await fake.start()
    print(
        json.dumps(
            {"http": fake.http_url, "ws": fake.ws_url, "api_key": fake.api_key, "secret": fake.secret}
        ),
        flush=True,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await fake.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.fakes.binance", description=__doc__)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--stream-interval", type=float, default=None)
    a = ap.parse_args(argv)
    asyncio.run(_main(a.host, a.port, a.stream_interval))
    return 0


if __name__ == "__main__":
    sys.exit(main())
