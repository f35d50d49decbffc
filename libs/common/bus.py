"""A thin wrapper over nats-py: reconnects forever, provisions streams, validates every message.

- `publish` sends a contract; on a subject kept by a stream it goes through JetStream with
  `Nats-Msg-Id` = the message id, so a republish inside the duplicate window is dropped by the server.
- `subscribe` (core NATS) and `consume` (durable JetStream consumer, explicit acks) validate each
  incoming message against its contract. An invalid message goes to `dlq.<subject>` with the reason,
  is counted, and the service keeps running.
- `subscribe_conflated` keeps the newest valid message per subject (last prices); each payload is validated on arrival.
- `drain` lets in-flight handlers finish and closes the connection (called on SIGTERM).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import nats
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import APIError, NoStreamResponseError, NotFoundError
from pydantic import ValidationError

from libs.common import subjects
from libs.common.backoff import connect_retrying
from libs.common.conflate import Conflated
from libs.common.contracts import DeadLetter, Message, utcnow
from libs.common.errors import ConfigurationError, InvalidInputError, TemporaryError
from libs.common.logging import begin_handling, end_handling, get_logger, handling
from libs.common.metrics import ServiceMetrics
from libs.common.settings import split_urls

M = TypeVar("M", bound=Message)
Handler = Callable[[M, str], Awaitable[None]]

DLQ_PAYLOAD_LIMIT = 4096
# No contract comes near this (the largest, AccountState, is a few KiB per symbol): anything bigger is
# refused before it is parsed, so a huge payload costs a length check, not a JSON parse.
MAX_PAYLOAD_BYTES = 256 << 10
# A JetStream publish that no stream answers ("no responders") is asked again, as nats.go's publish does: a
# stream electing its leader, or a new stream whose subjects are not yet known across a cluster, has none
# for a moment. Nothing was stored, and the message id makes a late duplicate harmless.
NO_RESPONDERS_RETRIES = 4
NO_RESPONDERS_WAIT_S = 0.25
DLQ_BURST = 200  # dead letters published (and logged) per second per service; the rest are counted only
# JetStream's answers when a stream asks for more replicas than the servers can hold: not clustered (one server),
# not enough servers in the cluster
REPLICA_ERRORS = frozenset({10074, 10023})


STREAM_FIELDS = (
    "subjects",
    "retention",
    "storage",
    "max_msgs_per_subject",
    "max_age",
    "max_bytes",
    "duplicate_window",
    "description",
    "num_replicas",
)


def _unchanged(current: StreamConfig, wanted: StreamConfig) -> bool:
    """The stream already has every setting `ensure_streams` sets (floats compared to the millisecond)."""
    for name in STREAM_FIELDS:
        a, b = getattr(current, name), getattr(wanted, name)
        if name == "num_replicas":
            a, b = a or 1, b or 1
        if isinstance(a, float) or isinstance(b, float):
            if a is None or b is None or abs(float(a) - float(b)) > 1e-3:
                return False
        elif name == "subjects":
            if sorted(a or []) != sorted(b or []):
                return False
        elif a != b:
            return False
    return True


class UnreadableEntry(InvalidInputError):
    """A stored message that does not decode; `seq` is its stream sequence."""

    def __init__(self, message: str, seq: int):
        super().__init__(message)
        self.seq = seq


class Bus:
    """One NATS connection per service, with JetStream, validation and dead-lettering. `url` is one server's
    URL or a cluster's comma-separated URLs: the client connects to one of them and, when that server goes
    away, reconnects to another (nats-py also learns the cluster's other members from the server it is on)."""

    def __init__(
        self, url: str, service: str, metrics: ServiceMetrics, *, user: str = "", password: str = ""
    ):
        self.url = url
        self.servers = split_urls(url)
        self.service = service
        self.metrics = metrics
        self.log = get_logger(service=service, component="bus")
        self._user, self._password = user, password
        self.nc: NatsClient | None = None
        self.js: JetStreamContext | None = None
        self.on_disconnect: list[Callable[[], Awaitable[None] | None]] = []
        self.on_reconnect: list[Callable[[], Awaitable[None] | None]] = []
        self.fatal: asyncio.Future[BaseException] | None = None
        self._kept: dict[str, bool] = {}
        self._dlq_window_start, self._dlq_in_window, self._dlq_dropped = 0.0, 0, 0
        self._subs: list[Any] = []
        self._closing = False
        self._connected_gauge = metrics.gauge("nats_connected", "1 while connected to NATS")
        self._reconnects = metrics.counter("nats_reconnects_total", "Reconnections to NATS")
        self._slow = metrics.counter("nats_errors_total", "Errors reported by the NATS client", ["kind"])

    # -- connection ---------------------------------------------------------------------------
    async def connect(
        self, *, connect_timeout: float = 5.0, retry_initial: bool = True, initial_deadline_s: float = 60.0
    ) -> None:
        """Connect (retrying the first connection with backoff when `retry_initial`), then reconnect forever."""
        self.fatal = asyncio.get_running_loop().create_future()
        kwargs: dict[str, Any] = {}
        if self._user:
            kwargs.update(user=self._user, password=self._password)

        async def attempt() -> NatsClient:
            return await nats.connect(
                servers=self.servers,
                name=f"bnml-{self.service}",
                max_reconnect_attempts=-1,
                reconnect_time_wait=0.25,
                connect_timeout=connect_timeout,
                allow_reconnect=True,
                pending_size=64 * 1024 * 1024,
                error_cb=self._on_error,
                disconnected_cb=self._on_disconnected,
                reconnected_cb=self._on_reconnected,
                closed_cb=self._on_closed,
                **kwargs,
            )

        unreachable = (OSError, nats.errors.NoServersError, TimeoutError)
        retrying = connect_retrying(
            unreachable,
            first_s=0.2,
            max_s=3.0,
            deadline_s=initial_deadline_s if retry_initial else 0.0,
            on_retry=lambda exc, wait: self.log.warning(
                "nats not reachable yet; retrying", url=self.url, retry_in_s=round(wait, 3)
            ),
        )
        try:
            nc: NatsClient = await retrying(attempt)
        except unreachable as exc:
            raise TemporaryError(f"cannot connect to NATS at {self.url}: {exc}") from exc
        self.nc = nc
        self.js = nc.jetstream(timeout=5.0)
        self._connected_gauge.set(1)
        self.log.info(
            "nats connected",
            url=str(nc.connected_url.netloc if nc.connected_url else ""),
            servers=len(self.servers),
        )

    @property
    def connected(self) -> bool:
        return bool(self.nc and self.nc.is_connected)

    async def _on_error(self, exc: Exception) -> None:
        kind = type(exc).__name__
        self._slow.labels(kind=kind).inc()
        self.log.warning("nats error", kind=kind, error=str(exc))

    async def _on_disconnected(self) -> None:
        self._connected_gauge.set(0)
        if self._closing:
            return
        self.log.warning("nats disconnected; reconnecting")
        await self._fire(self.on_disconnect)

    async def _on_reconnected(self) -> None:
        self._connected_gauge.set(1)
        self._reconnects.inc()
        self.log.info(
            "nats reconnected",
            url=str(self.nc.connected_url.netloc if self.nc and self.nc.connected_url else ""),
        )
        await self._fire(self.on_reconnect)

    async def _on_closed(self) -> None:
        self._connected_gauge.set(0)
        self.log.debug("nats connection closed")

    async def _fire(self, callbacks: list[Callable[[], Awaitable[None] | None]]) -> None:
        for cb in callbacks:
            try:
                res = cb()
                if asyncio.iscoroutine(res):
                    await res
            except Exception:  # a hook must never break the NATS client's callback loop
                self.log.exception("bus hook failed")

    async def ensure_streams(
        self,
        specs: tuple[subjects.StreamSpec, ...] = subjects.STREAMS,
        replicas: int | Callable[[str], int] = 1,
    ) -> None:
        """Create or update every stream; safe to call from every service at every start.

        `replicas` (a number, or a stream name -> number such as `settings.nats.replicas_for`) is each stream's
        JetStream replica count. An existing stream with more replicas keeps them: a client with a default or
        stale configuration (a CLI, a test tool) never scales the cluster's streams down; raising is applied
        (JetStream moves an R1 stream to R3 in place, copying its messages to the new peers). More replicas
        than the servers can hold (one server, or fewer servers than replicas) is a ConfigurationError."""
        assert self.js is not None
        for spec in specs:
            want = replicas(spec.name) if callable(replicas) else replicas
            config = StreamConfig(
                name=spec.name,
                subjects=list(spec.subjects),
                retention=RetentionPolicy.LIMITS,
                storage=StorageType.FILE,
                max_msgs_per_subject=spec.max_msgs_per_subject,
                max_age=spec.max_age_s,
                max_bytes=spec.max_bytes,
                duplicate_window=spec.duplicate_window_s,
                description=spec.description,
                num_replicas=want,
            )
            info = await self._info_or_create(spec.name, config, want)
            if info is None:
                continue  # created here, as configured
            have = info.config.num_replicas or 1
            if have > want:
                self.log.warning(
                    "stream keeps its replicas (never scaled down by a client)",
                    stream=spec.name,
                    replicas=have,
                    configured=want,
                )
                config.num_replicas = have
            if _unchanged(info.config, config):
                continue  # every service calls this at start: on a cluster an update is a meta-group proposal
            for attempt in range(3):
                try:
                    await self.js.update_stream(config)
                    break
                except APIError as exc:
                    self._refuse_replicas(spec.name, config.num_replicas or 1, exc)
                    raise
                except nats.errors.TimeoutError:  # a busy meta leader (several services starting at once)
                    if attempt == 2:
                        raise
                    await asyncio.sleep(0.5 * (attempt + 1))
            if have < want:
                await self._wait_replicated(spec.name, want)
                self.log.info("stream scaled up", stream=spec.name, replicas=want, was=have)

    async def _info_or_create(
        self, stream: str, config: StreamConfig, want: int, timeout_s: float = 30.0
    ) -> Any:
        """The stream's info, or None once this call created it (and its replicas are current). Asked again
        until `timeout_s` while a cluster cannot answer yet: a creation that timed out or met "JetStream not
        ready" (a fresh cluster electing its meta leader), or one another service won (then its info)."""
        assert self.js is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            try:
                return await self._stream_info(stream)
            except NotFoundError:
                pass
            try:
                await self.js.add_stream(config)
                # on a cluster a new stream elects its leader first; a publish before that gets "no
                # response from stream" (seen under load right after creation)
                await self._wait_replicated(stream, want)
                return None
            except APIError as exc:
                self._refuse_replicas(stream, want, exc)  # a replica count the servers cannot hold: refused
                if loop.time() > deadline:
                    raise
            except nats.errors.TimeoutError:
                if loop.time() > deadline:
                    raise
            await asyncio.sleep(0.25)  # then ask again: created by another service meanwhile, or ready now

    async def _stream_info(self, stream: str, attempts: int = 4) -> Any:
        """`stream_info`, asked again on a timeout: a cluster electing leaders after a node died (or several
        services starting at once) can leave the meta leader silent for a few seconds."""
        assert self.js is not None
        for attempt in range(attempts):
            try:
                return await self.js.stream_info(stream)
            except nats.errors.TimeoutError:
                if attempt == attempts - 1:
                    raise
                await asyncio.sleep(0.5 * (attempt + 1))
        raise AssertionError("unreachable")

    async def _wait_replicated(self, stream: str, replicas: int, timeout_s: float = 30.0) -> None:
        """After a creation or a scale-up the stream elects a leader (again) and its new peers catch up;
        until then its publishes time out. Wait for a leader and every peer current (on a single server,
        which reports no cluster, an R1 stream is ready at once)."""
        assert self.js is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            try:
                info = await self.js.stream_info(stream)
            except NotFoundError:  # just created: the cluster's meta layer may not answer for it yet
                if loop.time() > deadline:
                    raise
                await asyncio.sleep(0.05)
                continue
            peers = (info.cluster.replicas or []) if info.cluster else []
            if replicas == 1 and (info.cluster is None or info.cluster.leader):
                return
            if (
                info.cluster
                and info.cluster.leader
                and len(peers) == replicas - 1
                and all(p.current for p in peers)
            ):
                return
            if loop.time() > deadline:
                raise TemporaryError(
                    f"stream {stream} not replicated {replicas} times after {timeout_s}s: {info.cluster}"
                )
            await asyncio.sleep(0.05)

    @staticmethod
    def _refuse_replicas(stream: str, want: int, exc: APIError) -> None:
        if exc.err_code in REPLICA_ERRORS:
            raise ConfigurationError(
                "nats.replicas",
                f"stream {stream} at {want} replicas refused by NATS "
                f"({exc.description}); one server holds R1 only, R3 needs a cluster of "
                "three (bnml up --nats-cluster 3)",
            ) from None

    async def drain(self, timeout: float = 5.0) -> None:
        """Stop taking messages, let handlers finish, flush, close."""
        self._closing = True
        if self.nc and not self.nc.is_closed:
            try:
                await asyncio.wait_for(self.nc.drain(), timeout)
            except (TimeoutError, Exception) as exc:  # closing anyway
                self.log.warning("nats drain incomplete", error=str(exc))
                with contextlib.suppress(Exception):
                    await self.nc.close()
        self._connected_gauge.set(0)

    # -- publishing ---------------------------------------------------------------------------
    def is_kept(self, subject: str) -> bool:
        kept = self._kept.get(subject)
        if kept is None:
            kept = self._kept[subject] = subjects.stream_for(subject) is not None
        return kept

    async def publish(
        self, subject: str, msg: Message, *, timeout: float = 5.0, flush_now: bool = False
    ) -> bool:
        """Publish a contract. Returns False if JetStream reports it as a duplicate of an earlier publish."""
        payload = msg.model_dump_json().encode()
        return await self.publish_raw(subject, payload, msg_id=msg.id, timeout=timeout, flush_now=flush_now)

    async def publish_raw(
        self,
        subject: str,
        payload: bytes,
        *,
        msg_id: str | None = None,
        timeout: float = 5.0,
        flush_now: bool = False,
    ) -> bool:
        """A core NATS publish only queues the bytes for nats-py's flusher task, which writes them when the
        publishing task next yields. A handler working through a burst of queued messages does not yield
        until the burst is done, so what it publishes waits for the whole burst. `flush_now` yields once
        right after the publish, so the message leaves at once (for latency-critical messages such as a
        trading signal; bulk publishers should let the flusher batch). A JetStream publish waits for its
        ack, so it is never held back."""
        assert self.nc is not None
        if self.is_kept(subject):
            return await self._publish_kept(subject, payload, msg_id, timeout)
        await self.nc.publish(subject, payload)
        if flush_now:
            await asyncio.sleep(0)  # the publish woke the flusher task: let it write now
        return True

    async def _publish_kept(self, subject: str, payload: bytes, msg_id: str | None, timeout: float) -> bool:
        """A JetStream publish, waiting for the stream's ack; asked again while no stream answers."""
        assert self.js is not None
        headers = {"Nats-Msg-Id": msg_id} if msg_id else None
        tries = 0
        while True:
            tries += 1
            try:
                ack = await self.js.publish(subject, payload, headers=headers, timeout=timeout)
                return not ack.duplicate
            except (nats.errors.NoRespondersError, NoStreamResponseError) as exc:
                if tries > NO_RESPONDERS_RETRIES:
                    raise TemporaryError(
                        f"JetStream publish to {subject} failed: no stream answered"
                        f" ({tries} tries, {NO_RESPONDERS_WAIT_S} s apart)"
                    ) from exc
                await asyncio.sleep(NO_RESPONDERS_WAIT_S)
            except (nats.errors.TimeoutError, nats.errors.ConnectionClosedError) as exc:
                raise TemporaryError(f"JetStream publish to {subject} failed: {type(exc).__name__}") from exc

    # -- receiving ----------------------------------------------------------------------------
    @staticmethod
    def decode(model: type[M], subject: str, data: bytes) -> M:
        """Validate raw bytes against a contract; raise InvalidInputError with a readable reason."""
        if len(data) > MAX_PAYLOAD_BYTES:
            raise InvalidInputError(f"payload of {len(data)} bytes exceeds {MAX_PAYLOAD_BYTES}")
        try:
            return model.model_validate_json(data)
        except ValidationError as exc:
            # unknown fields first: they say most plainly that the sender speaks another contract
            errs = sorted(exc.errors(include_url=False), key=lambda e: e["type"] != "extra_forbidden")
            reason = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or '<body>'}: {e['msg']}" for e in errs[:8]
            )
            raise InvalidInputError(f"not a valid {model.__name__}: {reason}") from None

    async def dead_letter(self, subject: str, data: bytes, reason: str) -> None:
        """Bounded work per bad message, so a storm of them cannot stall the service (its heartbeat, its
        kill-switch path): always counted; the letter (a 4 KiB excerpt) goes out as a core publish, which
        the DLQ stream keeps without this handler waiting for an ack; past DLQ_BURST per second letters
        and log lines are dropped and summed up once a second instead. Every bad
        message ends with a yield to the loop: a subscription working through a queue of them never holds
        the loop for the whole queue (without it the kill-switch handler waited behind the storm)."""
        family = subject.split(".")[0]
        self.metrics.dlq.labels(subject=family).inc()
        self.metrics.count("dlq")
        now = asyncio.get_running_loop().time()
        if now - self._dlq_window_start >= 1.0:
            if self._dlq_dropped:
                self.log.warning(
                    "dead-letter storm: letters not published",
                    dropped=self._dlq_dropped,
                    window_s=round(now - self._dlq_window_start, 3),
                )
            self._dlq_window_start, self._dlq_in_window, self._dlq_dropped = now, 0, 0
        self._dlq_in_window += 1
        if self._dlq_in_window > DLQ_BURST:
            self._dlq_dropped += 1  # a storm: counted only
        else:
            await self._send_letter(subject, data, reason)
        await asyncio.sleep(0)

    async def _send_letter(self, subject: str, data: bytes, reason: str) -> None:
        self.log.warning("invalid message dead-lettered", subject=subject, reason=reason[:300])
        letter = DeadLetter(
            ts=utcnow(),
            subject=subject,
            service=self.service,
            reason=reason[:2000],
            payload=data[:DLQ_PAYLOAD_LIMIT].decode("utf-8", errors="replace"),
            payload_size=len(data),
        )
        try:
            assert self.nc is not None
            await self.nc.publish(subjects.dlq(subject), letter.model_dump_json().encode())
        except Exception as exc:  # the count and the log line above still record it
            self.log.error("dead-letter publish failed", subject=subject, error=str(exc))

    async def subscribe(
        self,
        subject: str,
        model: type[M],
        handler: Handler[M],
        *,
        queue: str = "",
        fail_closed: bool = False,
        pending_msgs_limit: int = 500_000,
        on_invalid: Callable[[str], Any] | None = None,
        accept: Callable[[str], bool] | None = None,
    ) -> Any:
        """Core NATS subscription; each message is validated then handed to `handler(msg, subject)`.

        `on_invalid(reason)` runs after an invalid message is dead-lettered (e.g. the kill-switch latch
        goes to unknown = engaged when its subject carries something unreadable). `accept(subject)`, when
        given, is asked first: a message it refuses is dropped before it is decoded (a shard's filter on the
        symbols it does not own, libs/common/shard.py).
        """
        assert self.nc is not None

        async def _cb(raw: Msg) -> None:
            if accept is not None and not accept(raw.subject):
                return
            try:
                msg = self.decode(model, raw.subject, raw.data)
            except InvalidInputError as exc:
                await self.dead_letter(raw.subject, raw.data, str(exc))
                if on_invalid is not None:
                    res = on_invalid(str(exc))
                    if asyncio.iscoroutine(res):
                        await res
                return
            await self._run_handler(handler, msg, raw.subject, fail_closed)

        sub = await self.nc.subscribe(
            subject,
            queue=queue,
            cb=_cb,
            pending_msgs_limit=pending_msgs_limit,
            pending_bytes_limit=256 * 1024 * 1024,
        )
        self._subs.append(sub)
        return sub

    async def subscribe_conflated(self, subject: str, model: type[M]) -> Conflated[M]:
        """Core NATS subscription that keeps only the newest valid message per subject (see
        `libs/common/conflate.py`). Every payload is validated as it arrives; invalid ones are dead-lettered."""
        assert self.nc is not None
        latest: Conflated[M] = Conflated(model, self.decode, self.dead_letter)
        put = latest.put

        async def _cb(raw: Msg) -> None:
            put(raw.subject, raw.data)

        sub = await self.nc.subscribe(
            subject, cb=_cb, pending_msgs_limit=500_000, pending_bytes_limit=256 * 1024 * 1024
        )
        self._subs.append(sub)
        return latest

    async def consume(
        self,
        stream: str,
        durable: str,
        subject: str,
        model: type[M],
        handler: Handler[M],
        *,
        fail_closed: bool = True,
        ack_wait_s: float = 30.0,
        max_ack_pending: int = 1000,
        deliver_new_only: bool = False,
    ) -> Any:
        """Durable JetStream consumer with explicit acks. The message is acked only after the handler returns.

        With `fail_closed`, a handler exception leaves the message un-acked (it will be redelivered
        after restart) and stops the service.
        """
        assert self.js is not None

        async def _cb(raw: Msg) -> None:
            try:
                msg = self.decode(model, raw.subject, raw.data)
            except InvalidInputError as exc:
                await self.dead_letter(raw.subject, raw.data, str(exc))
                with contextlib.suppress(Exception):
                    await raw.term()
                return
            ok = await self._run_handler(handler, msg, raw.subject, fail_closed)
            if ok:
                with contextlib.suppress(Exception):
                    await raw.ack()

        config = ConsumerConfig(
            durable_name=durable,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=ack_wait_s,
            max_ack_pending=max_ack_pending,
            deliver_policy=DeliverPolicy.NEW if deliver_new_only else DeliverPolicy.ALL,
            filter_subject=subject,
        )
        sub = await self.js.subscribe(
            subject,
            durable=durable,
            stream=stream,
            cb=_cb,
            manual_ack=True,
            config=config,
            pending_msgs_limit=100_000,
        )
        self._subs.append(sub)
        return sub

    async def follow(
        self,
        stream: str,
        subject: str,
        model: type[M],
        handler: Callable[[M, int], Awaitable[None]],
        on_invalid: Callable[[str, int], Any],
    ) -> Any:
        """Every message of `subject` from the stream's standing one on, in stream order, each with its stream
        sequence (`handler(msg, seq)`, `on_invalid(reason, seq)` for one that does not decode): an ordered
        JetStream consumer (ephemeral, no acks; re-created by nats-py after a gap or a server restart).
        For a last-value control subject (the kill switch) whose readers must never apply an older message
        after a newer one. A handler exception is logged and stops the service (fail closed)."""
        assert self.js is not None

        async def _cb(raw: Msg) -> None:
            try:
                seq = int(raw.metadata.sequence.stream)
            except Exception:  # not a stream delivery (cannot happen on an ordered consumer): order unknown
                seq = 0
            try:
                msg = self.decode(model, raw.subject, raw.data)
            except InvalidInputError as exc:
                await self.dead_letter(raw.subject, raw.data, str(exc))
                res = on_invalid(str(exc), seq)
                if asyncio.iscoroutine(res):
                    await res
                return
            try:
                with handling(raw.subject, msg.id):
                    await handler(msg, seq)
            except Exception as exc:
                self.metrics.handler_errors.labels(subject=subject.split(".")[0]).inc()
                with handling(raw.subject, msg.id):
                    self.log.exception("handler failed")
                if self.fatal is not None and not self.fatal.done():
                    self.fatal.set_result(exc)

        sub = await self.js.subscribe(
            subject,
            stream=stream,
            cb=_cb,
            ordered_consumer=True,
            deliver_policy=DeliverPolicy.LAST_PER_SUBJECT,
            idle_heartbeat=2.0,
            pending_msgs_limit=10_000,
        )
        self._subs.append(sub)
        return sub

    async def _run_handler(self, handler: Handler[M], msg: M, subject: str, fail_closed: bool) -> bool:
        token = begin_handling(subject, msg.id)  # the handler's log lines carry subject and msg_id
        try:
            await handler(msg, subject)
            return True
        except InvalidInputError as exc:
            await self.dead_letter(subject, msg.model_dump_json().encode(), str(exc))
            return True
        except Exception as exc:
            self.metrics.handler_errors.labels(subject=subject.split(".")[0]).inc()
            self.log.exception("handler failed")
            if fail_closed and self.fatal is not None and not self.fatal.done():
                self.fatal.set_result(exc)
            return False
        finally:
            end_handling(token)

    async def last_entry(self, stream: str, subject: str, model: type[M]) -> tuple[M | None, int]:
        """The last message kept for `subject` and its stream sequence ((None, 0) if the stream has none).
        Raises TemporaryError if unreachable, UnreadableEntry (an InvalidInputError, with `seq`) if undecodable."""
        assert self.js is not None
        try:
            raw = await self.js.get_last_msg(stream, subject)
        except NotFoundError:
            return None, 0
        except Exception as exc:
            raise TemporaryError(f"cannot read last value of {subject}: {type(exc).__name__}: {exc}") from exc
        try:
            return self.decode(model, subject, raw.data or b""), int(raw.seq or 0)
        except InvalidInputError as exc:
            raise UnreadableEntry(str(exc), int(raw.seq or 0)) from None

    async def last_value(self, stream: str, subject: str, model: type[M]) -> M | None:
        """The last message kept for `subject` (None if the stream has none). Raises TemporaryError if unreadable."""
        assert self.js is not None
        try:
            raw = await self.js.get_last_msg(stream, subject)
        except NotFoundError:
            return None
        except Exception as exc:
            raise TemporaryError(f"cannot read last value of {subject}: {type(exc).__name__}: {exc}") from exc
        return self.decode(model, subject, raw.data or b"")
