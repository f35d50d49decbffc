"""One process of the raw nats-py floor chain: republish every message from one subject to the next."""

import asyncio
import sys

import nats


async def main(url: str, src: str, dst: str) -> None:
    nc = await nats.connect(url)

    async def cb(msg):
        await nc.publish(dst, msg.data)

    await nc.subscribe(src, cb=cb)
    await nc.flush()
    print("ready", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
