"""Connection abuse: idle connections by the hundred, slowloris writers, connection churn and
abrupt resets against a `logbroker serve` subprocess with short timeouts, while a normal client
(the canary) produces and fetches. Checked:

- connections over `--max-connections` are refused cleanly (an error frame, then close);
- idle connections are closed after `--idle-timeout`, and half-sent frames after
  `--frame-timeout` (each within a second of its deadline);
- churn and resets cost nothing that stays: once the abusers are gone the broker's descriptors
  are back to their count before; the abuse runs twice, and the memory (RSS) after the second
  round is within `RSS_SLACK` of that after the first (CPython's allocator keeps what a first
  burst took, so RSS never returns to where it started: a leak shows as growth round after round);
- the canary is served throughout: its p99 latency under abuse is reported beside its quiet p99.
"""

from __future__ import annotations

import resource
import socket
import statistics
import struct
import tempfile
from pathlib import Path

import attrs
import trio

import logbroker
from logbroker.errors import ConnectionClosedError
from logbroker.testing import ServeProcess
from tools.campaigns.history import Outcome

__all__ = ["AbuseResult", "run_abuse"]

IDLE_TIMEOUT = 3.0
FRAME_TIMEOUT = 2.0
#: How much more memory than before the abuse the broker may keep (allocator arenas, caches).
RSS_SLACK = 20 << 20


@attrs.define
class AbuseResult(Outcome):
    idle: int = 0
    slowloris: int = 0
    churned: int = 0
    resets: int = 0
    refused: int = 0
    idle_closed_after: list[float] = attrs.Factory(list)
    slow_closed_after: list[float] = attrs.Factory(list)
    quiet_p99_ms: float = 0.0
    abused_p99_ms: float = 0.0
    descriptors: tuple[int, int, int] = (0, 0, 0)
    rss_mb: tuple[float, float, float] = (0.0, 0.0, 0.0)
    #: RSS after the last round minus after the first (the allocator keeps what the first took).
    rss_growth_mb: float = 0.0

    def summary(self) -> str:
        verdict = self.verdict()
        idle = max(self.idle_closed_after, default=0.0)
        slow = max(self.slow_closed_after, default=0.0)
        return (
            f"{self.idle} idle connections (closed after at most {idle:.1f} s, idle timeout {IDLE_TIMEOUT} s), "
            f"{self.slowloris} slowloris writers (closed after at most {slow:.1f} s, frame timeout "
            f"{FRAME_TIMEOUT} s), {self.churned} connections churned, {self.resets} resets, {self.refused} "
            f"refused over the limit; canary p99 {self.quiet_p99_ms:.1f} ms quiet, "
            f"{self.abused_p99_ms:.1f} ms under abuse; descriptors {self.descriptors[0]} before, "
            f"{self.descriptors[1]} at the peak, {self.descriptors[2]} after; RSS {self.rss_mb[0]:.0f} MB "
            f"before, {self.rss_mb[1]:.0f} at the peak, {self.rss_mb[2]:.0f} after, "
            f"{self.rss_growth_mb:+.1f} MB from the first round to the last; {verdict}"
        )


async def run_abuse(
    *,
    idle: int = 300,
    slowloris: int = 50,
    churn: int = 1000,
    resets: int = 200,
    max_connections: int = 400,
    rounds: int = 2,
) -> AbuseResult:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 8 * max_connections)), hard))
    result = AbuseResult(idle=idle, slowloris=slowloris)
    work = Path(tempfile.mkdtemp(prefix="logbroker-abuse-"))
    broker = ServeProcess(
        "--log-level",
        "error",
        "--idle-timeout",
        str(IDLE_TIMEOUT),
        "--frame-timeout",
        str(FRAME_TIMEOUT),
        "--max-connections",
        str(max_connections),
        data_dir=work / "data",
    )
    try:
        await trio.to_thread.run_sync(broker.start)
        async with await logbroker.connect(broker.address) as client:
            await client.create_topic("canary")
            await _canary(client, 1.0)  # warm up
            fds_before, rss_before = broker.descriptors(), broker.rss_mb()
            result.quiet_p99_ms = await _canary(client, 3.0)
            rss_after_round: list[float] = []
            for _ in range(rounds):  # the first round warms the allocator up; later ones must not grow
                result.idle_closed_after.clear()
                result.slow_closed_after.clear()
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(_idle, broker.port, idle, result)
                    nursery.start_soon(_slowloris, broker.port, slowloris, result)
                    nursery.start_soon(_churn, broker.port, churn, result)
                    nursery.start_soon(_resets, broker.port, resets, result)
                    await trio.sleep(0.5)  # the abusers are connected
                    peak_fds, peak_rss = broker.descriptors(), broker.rss_mb()
                    result.refused = await _over_the_limit(broker.port, max_connections - idle - slowloris)
                    result.abused_p99_ms = await _canary(client, 2.0)
                await trio.sleep(1.0)  # the broker closes what the abusers left
                await _canary(client, 0.5)
                rss_after_round.append(broker.rss_mb())
            fds_after = broker.descriptors()
        result.descriptors = (fds_before, peak_fds, fds_after)
        result.rss_mb = (rss_before, peak_rss, rss_after_round[-1])
        result.rss_growth_mb = rss_after_round[-1] - rss_after_round[0]
        _judge(result)
    finally:
        broker.kill()
        broker.close()
    return result


def _judge(result: AbuseResult) -> None:
    if len(result.idle_closed_after) != result.idle:
        result.violations.append(
            f"only {len(result.idle_closed_after)} of {result.idle} idle connections were closed"
        )
    if any(not IDLE_TIMEOUT - 0.1 <= t <= IDLE_TIMEOUT + 1.5 for t in result.idle_closed_after):
        result.violations.append(
            f"idle connections closed after {min(result.idle_closed_after):.2f}-{max(result.idle_closed_after):.2f} s"
        )
    if len(result.slow_closed_after) != result.slowloris:
        result.violations.append(
            f"only {len(result.slow_closed_after)} of {result.slowloris} slowloris writers were closed"
        )
    if any(t > FRAME_TIMEOUT + 1.5 for t in result.slow_closed_after):
        result.violations.append(f"a slowloris writer lasted {max(result.slow_closed_after):.2f} s")
    if result.refused == 0:
        result.violations.append("no connection over the limit was refused")
    if result.descriptors[2] > result.descriptors[0] + 2:
        result.violations.append(f"descriptors {result.descriptors[0]} before, {result.descriptors[2]} after")
    if result.rss_growth_mb * (1 << 20) > RSS_SLACK:
        result.violations.append(
            f"RSS grew by {result.rss_growth_mb:.0f} MB from one round of abuse to the next"
        )


async def _canary(client: logbroker.Client, seconds: float) -> float:
    """Produce and fetch back one record at a time for `seconds`; the p99 round trip (ms)."""
    times: list[float] = []
    deadline = trio.current_time() + seconds
    while trio.current_time() < deadline:
        start = trio.current_time()
        try:
            offset = await client.produce("canary", [b"tweet"])
        except ConnectionClosedError:  # idle past the idle timeout while the abuse was set up
            offset = await client.produce("canary", [b"tweet"])  # on a new connection
        consumer = client.consumer("canary", start=offset)
        await consumer.__anext__()
        times.append(trio.current_time() - start)
    return statistics.quantiles(times, n=100)[98] * 1000 if len(times) > 1 else 0.0


async def _idle(port: int, count: int, result: AbuseResult) -> None:
    async def one() -> None:
        opened = trio.current_time()  # before the connect: the server's timer starts later
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        try:
            while await stream.receive_some(1 << 16):
                pass
        except trio.BrokenResourceError:
            pass
        result.idle_closed_after.append(trio.current_time() - opened)
        await stream.aclose()

    async with trio.open_nursery() as nursery:
        for _ in range(count):
            nursery.start_soon(one)


async def _slowloris(port: int, count: int, result: AbuseResult) -> None:
    """Start a 100-byte frame and send one more byte of it every 0.3 s."""

    async def one() -> None:
        opened = trio.current_time()
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        try:
            await stream.send_all(struct.pack(">I", 100))
            while True:
                with trio.move_on_after(0.3):
                    if not await stream.receive_some(1 << 16):
                        break
                await stream.send_all(b"x")
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        result.slow_closed_after.append(trio.current_time() - opened)
        await stream.aclose()

    async with trio.open_nursery() as nursery:
        for _ in range(count):
            nursery.start_soon(one)


async def _churn(port: int, count: int, result: AbuseResult) -> None:
    """Connect, say hello, close; `count` times."""
    address = f"127.0.0.1:{port}"
    for _ in range(count):
        try:
            async with await logbroker.connect(address):
                result.churned += 1
        except logbroker.errors.LogbrokerError:
            pass  # refused over the limit: counted there


async def _resets(port: int, count: int, result: AbuseResult) -> None:
    """Connect, send half a frame, and reset the connection (SO_LINGER 0)."""
    for _ in range(count):
        sock = trio.socket.socket()
        await sock.connect(("127.0.0.1", port))
        await sock.send(struct.pack(">I", 64) + b"half")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
        result.resets += 1
        await trio.sleep(0.001)


async def _over_the_limit(port: int, room: int) -> int:
    """Open `room` + 20 connections at once: how many the broker refused (an error frame, then
    the close)."""
    streams: list[trio.SocketStream] = []
    refused = 0

    async def answered(stream: trio.SocketStream) -> None:
        nonlocal refused
        with trio.move_on_after(1):
            if await stream.receive_some(1 << 16):
                refused += 1

    try:
        for _ in range(room + 20):
            streams.append(await trio.open_tcp_stream("127.0.0.1", port))
        async with trio.open_nursery() as nursery:
            for stream in streams:
                nursery.start_soon(answered, stream)
    finally:
        for stream in streams:
            await stream.aclose()
    return refused
