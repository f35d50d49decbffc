"""One process of the order-path floor (`bench_pipeline.order_path_floor`): the suite's path with none of
its code, only the same transports and the same durable writes.

- `relay SRC DST N`: republish every Nth message (a core NATS hop, as signal sends a decision every Nth tick);
- `gate SRC DST N`: republish every Nth message through JetStream (awaiting the PubAck, as risk publishes a
  verdict; the others are dropped, as risk's throttle refuses them);
- `journal SRC DST DB_URL`: a durable JetStream consumer (explicit acks, as execution's); for each message
  two durable one-row inserts on one connection (the order row before the send, then the fill), then it
  publishes the time the second commit returned, on the clock the message's start time was stamped with.
"""

import asyncio
import struct
import sys
import time

import nats
from nats.js.api import AckPolicy, ConsumerConfig, StorageType, StreamConfig
from nats.js.errors import NotFoundError


async def main(mode: str, url: str, src: str, dst: str, arg: str = "") -> None:
    nc = await nats.connect(url)
    js = nc.jetstream()
    if mode == "relay":
        every, seen = int(arg), [0]

        async def relay(msg):
            seen[0] += 1
            if seen[0] % every == 0:
                await nc.publish(dst, msg.data)

        await nc.subscribe(src, cb=relay)
    elif mode == "gate":
        every, seen = int(arg), [0]
        await js.add_stream(StreamConfig(name="PATHFLOOR", subjects=[dst], storage=StorageType.FILE))

        async def gate(msg):
            seen[0] += 1
            if seen[0] % every == 0:
                await js.publish(dst, msg.data, headers={"Nats-Msg-Id": str(seen[0])})

        await nc.subscribe(src, cb=gate)
    elif mode == "journal":
        import psycopg

        db = await psycopg.AsyncConnection.connect(arg, autocommit=True)
        await db.execute(
            "CREATE TABLE IF NOT EXISTS path_floor (id bigserial PRIMARY KEY, k text NOT NULL,"
            " at timestamptz NOT NULL DEFAULT now())"
        )

        async def journal(msg):
            await db.execute("INSERT INTO path_floor (k) VALUES (%s)", ("order",))
            await db.execute("INSERT INTO path_floor (k) VALUES (%s)", ("fill",))
            done = time.time_ns()
            await msg.ack()
            await nc.publish(dst, msg.data[:8] + struct.pack("q", done))

        for attempt in range(100):  # the gate process creates the stream; it starts at the same time
            try:
                await js.subscribe(
                    src,
                    durable="pathfloor",
                    cb=journal,
                    manual_ack=True,
                    config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT),
                )
                break
            except NotFoundError:
                if attempt == 99:
                    raise
                await asyncio.sleep(0.1)
    await nc.flush()
    print("ready", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:]))
