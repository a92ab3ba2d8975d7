"""One client connection: read frames, dispatch requests, write responses, enforce the limits.

`BaseConnection` is what the connections of both protocols share (`logbroker.server.native` and
`logbroker.server.kafka` each add their dispatch and their answering order): the read loop feeds
a sans-IO protocol object; each request is dispatched in the order it arrived (a produce is
appended right there, so appends keep that order) and answered either at once or by a task of
the connection's nursery (a request that waits: for an fsync, records, a rebalance). Responses go
through a byte-counted queue to one writer task, which coalesces small ones into one `send_all`
and sends large buffers (record batches) as they are, uncopied.

Before any request's work, `admit` applies what its endpoint declares: the ACLs it needs, with
`create` on the topics a producer's request may create (the broker creates topics on first
produce). A principal
over a quota is slowed down: the connection stops reading its requests for
the quota's delay (Kafka mutes the channel the same way and tells the client `throttle_time_ms`).

Limits, each closing the connection with a logged reason:

- idle: nothing received and nothing in flight for `idle_timeout`;
- slowloris: a frame started and not finished within `frame_timeout`;
- in flight: past `max_in_flight` requests the read loop stops reading until one completes;
- slow reader: a send that makes no progress for `send_timeout` (fetch responses are sized so
  queued output stays within `max_output_bytes`; a client that keeps asking without reading is
  also cut when its queue passes twice that);
- protocol: bytes that are not frames, or a frame over `max_frame_bytes` (refused from its
  length prefix, before the body is read);
- wrong listener: a first request in another protocol (a Kafka client on the native port, a
  native client on the Kafka port, TLS on a plain port) is logged once, answered in the
  client's own protocol where it can carry a word (`wrong_listener`), and the connection closed;
- login: on a broker that requires one, nothing but the login requests before it succeeds, in
  frames of at most `pre_auth_max_frame_bytes`; a failed login closes the connection, and the
  client's address waits before its next login (the login throttle).
"""

from __future__ import annotations

import abc
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import trio

from logbroker.broadcast import Broadcast
from logbroker.engine.engine import Engine
from logbroker.errors import (
    IllegalSaslStateError,
    LogbrokerError,
    LoginThrottledError,
    ProtocolError,
    SaslAuthenticationError,
)
from logbroker.protocol.connection import CLOSED, NEED_DATA
from logbroker.protocol.sniff import Wire, classify_request
from logbroker.security.scram import check_username
from logbroker.server.security import ANONYMOUS, Need, Security
from logbroker.server.wrong_listener import LISTENER_NAMES, Ports, wrong_listener
from logbroker.storage.fs import Buffer

if TYPE_CHECKING:
    from logbroker.security.login import Login
    from logbroker.server.config import ServerConfig

__all__ = ["BaseConnection", "Ports", "SansIOProtocol", "certificate_name", "local_name", "peer_name"]

logger = logging.getLogger("logbroker.connections")

_RECEIVE_SIZE = 256 * 1024
#: Small answers are joined into one `send_all` up to this much; a larger buffer goes alone.
_COALESCE_BYTES = 256 * 1024


class SansIOProtocol(Protocol):
    """What the read loop needs of a protocol: bytes in, events out (h11's shape). Events are
    requests, or the `NEED_DATA` / `CLOSED` sentinels of `logbroker.protocol.connection`."""

    max_frame_bytes: int

    @property
    def partial_frame(self) -> bool: ...

    def receive_data(self, data: bytes) -> None: ...

    def next_event(self) -> Any: ...


class BaseConnection(abc.ABC):
    #: The protocol this listener speaks.
    wire: ClassVar[Wire]

    def __init__(
        self,
        stream: trio.abc.Stream,
        engine: Engine,
        config: ServerConfig,
        protocol: SansIOProtocol,
        security: Security,
        advertised: tuple[str, int] = ("", -1),
        ports: Ports | None = None,
    ) -> None:
        self._stream = stream
        #: The server's ports, to tell a client that came to the wrong one where to go.
        self.ports = ports or Ports()
        #: The first bytes received, until they show which protocol the client speaks.
        self._opening: bytearray | None = bytearray()
        self.engine = engine
        self.config = config
        #: Where clients are told to connect to this listener (Kafka's Metadata answers).
        self.advertised = advertised
        self._protocol = protocol
        self.security = security
        #: Who the connection acts for: None until a login succeeds, on a broker requiring one.
        self.principal: str | None = security.first_principal(certificate_name(stream))
        self._login: Login | None = None
        if self.principal is None:
            protocol.max_frame_bytes = min(config.pre_auth_max_frame_bytes, config.max_frame_bytes)
        #: A quota's delay: no request is read before this time.
        self._muted_until = 0.0
        self._in_flight = trio.Semaphore(config.max_in_flight)
        self._out: deque[Buffer] = deque()
        self._out_bytes = 0
        self._out_ready = trio.Event()  # a latch: set by `send`, taken by the writer
        self._sent = Broadcast()
        self._scope = trio.CancelScope()
        self._reading = trio.CancelScope()
        self._tasks = 0
        self._task_done = Broadcast()
        self._last_activity = trio.current_time()
        #: Output bytes promised to fetches being built (so responses fit `max_output_bytes`).
        self._reserved = 0
        #: Answers ready but held back behind an earlier one (a protocol that answers in order):
        #: output too, though not queued yet.
        self._held = 0
        self._budget_freed = Broadcast()
        self.close_reason: str | None = None
        self.peer = peer_name(stream)
        self.host = self.peer.rpartition(":")[0]
        #: What the client calls itself (native Hello, a Kafka request's header), for the log.
        self.client_id: str | None = None

    async def run(self) -> None:
        """Serve the connection until it closes; never raises for a misbehaving client."""
        logger.debug("%s: connected", self.peer)
        try:
            with self._scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._writer)
                    if self.principal is None:
                        nursery.start_soon(self._login_deadline)
                    with self._reading:
                        await self._read_loop(nursery)
                    await self._finish_in_flight()
                    await self._drain_output()
                    nursery.cancel_scope.cancel()
        except Exception as exc:
            lost = _connection_lost(exc)
            if lost is not None:
                self.close_reason = self.close_reason or f"connection lost: {lost}"
            else:
                # A bug must cost this connection, never the server and everyone else on it.
                logger.exception("%s: closing after an unexpected error", self.peer)
                self.close_reason = self.close_reason or "internal error"
        finally:
            with trio.CancelScope(shield=True):
                await self._stream.aclose()
            logger.debug("%s: closed: %s", self.peer, self.close_reason or "done")

    def stop_reading(self) -> None:
        """Graceful shutdown: take no more requests; finish and answer those in flight."""
        self._reading.cancel()

    def close(self, reason: str) -> None:
        """Close at once, abandoning whatever is in flight."""
        if self.close_reason is None:
            self.close_reason = reason
            if reason.startswith(("slow", "idle", "frame", "protocol", "send", "login")):
                logger.info("%s: closing: %s", self.peer, reason)
        self._scope.cancel()

    # -- reading -------------------------------------------------------------------------------

    async def _read_loop(self, nursery: trio.Nursery) -> None:
        """Read and dispatch requests until the peer closes or a limit is hit.

        Two deadlines: while a frame is partly received it must make progress - a frame
        completes - within `frame_timeout` (time the broker itself spends not reading, held back
        by `max_in_flight`, does not count); otherwise the connection must send something within
        `idle_timeout` unless requests are in flight (their completion counts as activity).
        """
        config = self.config
        frame_started: float | None = None
        while True:
            now = trio.current_time()
            if self._protocol.partial_frame:
                if frame_started is None:
                    frame_started = now
                deadline = frame_started + config.frame_timeout
                why = f"frame timeout: a frame was started and not finished within {config.frame_timeout} s"
            else:
                frame_started = None
                deadline = self._last_activity + config.idle_timeout
                why = f"idle for {config.idle_timeout} s"
            with trio.move_on_at(deadline) as waited:
                data = await self._stream.receive_some(_RECEIVE_SIZE)
            if waited.cancelled_caught:
                if frame_started is None:
                    if self._tasks:
                        self._last_activity = trio.current_time()  # requests in flight: not idle
                        continue
                    if trio.current_time() < self._last_activity + config.idle_timeout:
                        continue  # a request finished since the deadline was set
                self.close(why)
                return
            self._last_activity = trio.current_time()
            if self._opening is not None and self._came_to_the_wrong_listener(data):
                return
            self._protocol.receive_data(bytes(data))  # TLS streams give bytearrays
            while True:
                try:
                    event = self._protocol.next_event()
                except ProtocolError as exc:
                    self.close(f"protocol error: {exc.message}")
                    return
                if event is NEED_DATA:
                    break
                if event is CLOSED:
                    return
                frame_started = None  # a frame completed: progress
                if self._muted_until > trio.current_time():
                    await trio.sleep_until(self._muted_until)  # over a quota: slow the client down
                await self._in_flight.acquire()
                self._dispatch(event, nursery)

    @property
    def requester(self) -> str:
        """Who sends this connection's requests, for the log: protocol, client id, address and
        principal (when it logged in or showed a certificate)."""
        who = f"{LISTENER_NAMES[self.wire]} client"
        if self.client_id:
            who += f" {self.client_id!r}"
        who += f" at {self.peer}"
        if self.principal is not None and self.principal != ANONYMOUS:
            who += f" ({self.principal})"
        return who

    def _came_to_the_wrong_listener(self, data: bytes | bytearray) -> bool:
        """Look at the first bytes (until they tell which protocol they speak); True, with the
        client told where possible, when it is another protocol than this listener's."""
        assert self._opening is not None
        self._opening += data
        client = classify_request(bytes(self._opening))
        if client is None:
            return False
        first, self._opening = bytes(self._opening), None
        if client is self.wire or client is Wire.UNKNOWN:
            return False
        host, _, port = local_name(self._stream).rpartition(":")
        verdict = wrong_listener(
            self.wire, client, first, host.strip("[]"), int(port) if port.isdigit() else -1, self.ports
        )
        logger.log(verdict.level, "%s: %s", self.peer, verdict.message)
        self.close_reason = f"wrong listener: {verdict.message}"
        if verdict.answer:
            self.send(verdict.answer)
        return True

    # -- security ------------------------------------------------------------------------------

    def admit(
        self,
        request: Any,
        needs: Callable[[Any], Sequence[Need]],
        creates: Callable[[Any], Sequence[str]] = lambda request: (),
    ) -> None:
        """What every request passes before its work, on a broker with ACLs: what its endpoint
        says it `needs`, and `create` on each topic it may create (`creates`) that does not
        exist yet, when the broker creates topics on first produce (Kafka's rule). Raises the
        refusal. (The topics themselves are created by the work, where its rules say.)"""
        if not self.security.authorize or self.principal is None:
            return  # working out the needs is not free: skipped on a broker without ACLs
        wanted = list(needs(request))
        topics = self.engine.topics
        if topics.options.auto_create_topics:
            wanted += [("create", "topic", t) for t in creates(request) if not topics.exists(t)]
        self.security.check(self.principal, wanted)

    def may(self, operation: str, resource_type: str, name: str) -> bool:
        """Whether the ACLs let this connection's principal do it (lists show only that)."""
        return self.principal is not None and self.security.may(
            self.principal, operation, resource_type, name
        )

    def denied(self, operation: str, resource_type: str, name: str) -> LogbrokerError | None:
        """The refusal of one resource of a request that is authorized item by item, or None."""
        if not self.security.authorize:
            return None  # the common case, per topic of every produce and fetch: nothing to do
        try:
            self.security.check(self.principal or "", [(operation, resource_type, name)])
        except LogbrokerError as exc:
            return exc
        return None

    def throttle(self, delay: float) -> None:
        """Read nothing more from this client for `delay` s (a quota's verdict)."""
        if delay > 0:
            self._muted_until = max(self._muted_until, trio.current_time() + delay)

    @property
    def throttled_ms(self) -> int:
        """How much longer the client is held back (Kafka's throttle_time_ms)."""
        return max(round((self._muted_until - trio.current_time()) * 1000), 0)

    def charge_request(self) -> None:
        """Count one request against the principal's request-rate quota."""
        quotas = self.security.quotas
        if self.principal is not None and quotas.enabled:
            self.throttle(quotas.request(self.principal, trio.current_time()))

    def charge_produce(self, size: int) -> None:
        quotas = self.security.quotas
        if self.principal is not None and quotas.enabled:
            self.throttle(quotas.produce(self.principal, trio.current_time(), size))

    def charge_fetch(self, size: int) -> None:
        quotas = self.security.quotas
        if self.principal is not None and quotas.enabled and size:
            self.throttle(quotas.fetch(self.principal, trio.current_time(), size))

    def login_handshake(self, mechanism: str) -> list[str]:
        """Begin a login; the mechanisms offered (raises when the mechanism is not one)."""
        if not self.security.authenticate:
            raise IllegalSaslStateError(
                "this broker does not take logins (it was started without --authenticate)"
            )
        self._check_login_wait()
        if self._login is None:
            self._login = self.security.new_login()
        self._login.handshake(mechanism)
        return self._login.mechanisms

    def _check_login_wait(self) -> None:
        wait = self.security.login_throttle.wait(self.host, trio.current_time())
        if wait > 0:
            raise LoginThrottledError(f"too many failed logins from {self.host}: try again in {wait:.1f} s")

    def mechanisms(self) -> list[str]:
        return self.security.new_login().mechanisms if self.security.authenticate else []

    def authenticate(self, token: bytes) -> bytes | Awaitable[bytes]:
        """The broker's answer to the client's next login token; the connection is logged in
        once the exchange is verified. A refusal goes through `fail_login` and is raised. A PLAIN
        password is hashed in a worker thread (a few ms of PBKDF2 that would otherwise stall
        every connection): then the answer is an awaitable; SCRAM's checks are cheap and run
        here, so the next request of the connection already finds it logged in."""
        login = self._login
        try:
            if login is None:
                raise IllegalSaslStateError("no login in progress: send a SASL handshake first")
            # Checked at every step, not only the handshake: guesses started side by side on
            # many connections wait as one after the first of them fails.
            self._check_login_wait()
            if not login.hashes_password:
                reply = login.step(token)
                self._after_step(login)
                return reply
        except LogbrokerError as exc:
            self.fail_login(exc)
            raise
        except Exception:  # a defect: the login is over, and so is the connection
            self.stop_reading()
            raise

        async def in_thread() -> bytes:
            try:
                reply = await trio.to_thread.run_sync(login.step, token)
            except LogbrokerError as exc:
                self.fail_login(exc)
                raise
            except Exception:
                self.stop_reading()
                raise
            self._after_step(login)
            return reply

        return in_thread()

    def _after_step(self, login: Login) -> None:
        if login.principal is not None:
            self.principal = login.principal
            self._protocol.max_frame_bytes = self.config.max_frame_bytes
            # The host's failures are not forgiven here: one good account must not reset the
            # wait for guesses at another's password.
            logger.info("%s: logged in as %s", self.peer, self.principal)

    def fail_login(self, error: LogbrokerError) -> None:
        """A failed login is answered, then the connection closes: one login attempt per
        connection. Wrong credentials make the client's address wait before its next attempt
        (`login_handshake` refuses it until then), a wait that doubles with each failure from
        that address."""
        self.stop_reading()
        if isinstance(error, SaslAuthenticationError) and not isinstance(error, LoginThrottledError):
            wait = self.security.login_throttle.failed(self.host, trio.current_time())
            who = self._login.attempted if self._login is not None else None
            logger.warning(
                "%s: login failed%s: %s (the address may try again in %.1f s)",
                self.peer,
                f" for user {who!r}" if who else "",
                error.message,
                wait,
            )
        else:
            logger.info("%s: closing: %s", self.peer, error.message)

    async def _login_deadline(self) -> None:
        """A connection that has not logged in within `login_timeout` is closed: it must not
        hold a slot by sending Hello or ApiVersions now and then."""
        await trio.sleep(self.config.login_timeout)
        if self.principal is None:
            self.close(f"login timeout: not logged in within {self.config.login_timeout} s")

    def refuse_before_login(self, what: str) -> None:
        logger.info("%s: closing: %s before logging in", self.peer, what)
        self.close_reason = f"login required: {what} before logging in"
        self.stop_reading()

    @abc.abstractmethod
    def _dispatch(self, event: Any, nursery: trio.Nursery) -> None:
        """Handle one request; release `_in_flight` once it is answered (or needs no answer)."""

    def _run_task(self, nursery: trio.Nursery, work: Callable[[], Awaitable[None]]) -> None:
        """Run `work` (a request that waits) in the connection's nursery, counted as in flight."""
        self._tasks += 1

        async def task() -> None:
            try:
                await work()
            finally:
                self._tasks -= 1
                self._last_activity = trio.current_time()
                self._task_done.fire()

        nursery.start_soon(task)

    @asynccontextmanager
    async def output_budget(self) -> AsyncIterator[int]:
        """Output budget for one response being built (a fetch), so a client that reads
        promptly is never mistaken for a slow reader however many fetches it pipelines. Answers
        held back behind an earlier one (a protocol that answers in order) count as output
        already. Waits while the budget is spent."""
        limit = self.config.max_output_bytes
        await self._budget_freed.wait_until(lambda: self._out_bytes + self._held + self._reserved < limit)
        budget = limit - self._out_bytes - self._held - self._reserved
        self._reserved += budget
        try:
            yield budget
        finally:
            self._reserved -= budget
            self._budget_freed.fire()

    async def _finish_in_flight(self) -> None:
        await self._task_done.wait_until(lambda: not self._tasks)

    # -- writing -------------------------------------------------------------------------------

    def send(self, data: Buffer | Sequence[Buffer]) -> None:
        """Queue one answer: a buffer, or a list of them sent back to back (a large one, such as
        a partition's record batches, is sent as it is, never copied)."""
        parts: Sequence[Buffer] = data if isinstance(data, list | tuple) else (data,)
        for part in parts:
            self._out.append(part)
            self._out_bytes += len(part)
        # Fetches are sized to the budget (one batch may overshoot it); past twice the budget the
        # client is not reading what it asked for.
        if self._out_bytes > 2 * self.config.max_output_bytes + self.config.max_frame_bytes:
            self.close(
                f"slow reader: {self._out_bytes} bytes of responses queued "
                f"(max_output_bytes is {self.config.max_output_bytes})"
            )
        self._out_ready.set()

    async def _writer(self) -> None:
        while True:
            await self._out_ready.wait()
            self._out_ready = trio.Event()
            while self._out:
                parts = [self._out.popleft()]
                size = len(parts[0])
                while self._out and size + len(self._out[0]) <= _COALESCE_BYTES:
                    parts.append(self._out.popleft())
                    size += len(parts[-1])
                data = parts[0] if len(parts) == 1 else b"".join(parts)
                with trio.move_on_after(self.config.send_timeout) as waited:
                    await self._stream.send_all(data)
                if waited.cancelled_caught:
                    self.close(f"send timeout: the client took no data for {self.config.send_timeout} s")
                    return
                self._out_bytes -= size
                self._budget_freed.fire()
            self._sent.fire()

    async def _drain_output(self) -> None:
        await self._sent.wait_until(lambda: not self._out_bytes)


def _connection_lost(exc: Exception) -> Exception | None:
    """The error that says the peer went away (reset, closed) if that is all `exc` is, alone or
    grouped by a nursery; None for anything else."""
    lost = (trio.BrokenResourceError, trio.ClosedResourceError)
    if isinstance(exc, lost):
        return exc
    if isinstance(exc, ExceptionGroup):
        matched, rest = exc.split(lost)
        if matched is not None and rest is None:
            leaf: Exception = matched
            while isinstance(leaf, ExceptionGroup):
                leaf = leaf.exceptions[0]
            return leaf
    return None


def certificate_name(stream: trio.abc.Stream) -> str | None:
    """The common name (CN) of the certificate the peer presented over mutual TLS, or None.

    Only a certificate with exactly one CN made of the characters of a user name (`A-Z a-z 0-9
    . _ @ -`) names a principal: several CNs could be read differently by other tools, and other
    characters would reach logs and error messages."""
    if not isinstance(stream, trio.SSLStream):
        return None
    certificate = stream.getpeercert() or {}
    names = [
        str(value) for entry in certificate.get("subject", ()) for key, value in entry if key == "commonName"
    ]
    if len(names) != 1 or names[0] == "ANONYMOUS":
        return None
    try:
        check_username(names[0])
    except ValueError:
        return None
    return names[0]


def peer_name(stream: trio.abc.Stream) -> str:
    """HOST:PORT of the other end of a TCP stream (through TLS too), or "?"."""
    return _socket_name(stream, peer=True)


def local_name(stream: trio.abc.Stream) -> str:
    """HOST:PORT of this end of a TCP stream (the address the client reached), or "?"."""
    return _socket_name(stream, peer=False)


def _socket_name(stream: trio.abc.Stream, *, peer: bool) -> str:
    while isinstance(stream, trio.SSLStream):
        stream = stream.transport_stream
    try:
        sock = stream.socket  # type: ignore[attr-defined]
        host, port = (sock.getpeername() if peer else sock.getsockname())[:2]
    except (OSError, AttributeError):
        return "?"
    return f"{host}:{port}"
