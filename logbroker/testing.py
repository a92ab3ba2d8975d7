"""A real logbroker inside your test suite, without starting a process.

In trio code (and with pytest-trio):

    async with logbroker.testing.run_broker() as broker:      # memory storage, port 0
        client = await logbroker.connect(broker.address)

Anywhere else (plain functions, asyncio, threads, Kafka clients):

    with logbroker.testing.BrokerThread() as broker:           # runs in a background thread
        ...  # broker.address is "127.0.0.1:<port>"

    with logbroker.testing.BrokerThread(kafka_port=0) as broker:   # also speaks Kafka
        producer = confluent_kafka.Producer({"bootstrap.servers": broker.kafka_address})

With logbroker installed, pytest gets two fixtures: `logbroker_broker` (trio, needs pytest-trio)
and `logbroker_thread` (any test); each yields a `RunningBroker` with `.address`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import attrs
import trio

from logbroker.broker.broker import Broker
from logbroker.server.config import Settings
from logbroker.server.server import Server

__all__ = ["BrokerThread", "RunningBroker", "run_broker"]


@attrs.frozen
class RunningBroker:
    """A broker serving on loopback: connect to `address`."""

    address: str
    server: Server
    broker: Broker

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def kafka_address(self) -> str:
        """Where Kafka clients connect (`kafka_port` must have been given, 0 for a free one)."""
        if self.server.kafka_port < 0:
            raise RuntimeError("this broker has no Kafka listener: start it with kafka_port=0")
        return f"{self.server.kafka.host}:{self.server.kafka_port}"

    def __str__(self) -> str:
        return self.address


@asynccontextmanager
async def run_broker(
    *,
    data_dir: str | None = None,
    fsync: str = "always",
    auto_create_topics: bool = False,
    default_partitions: int = 1,
    **server_settings: Any,
) -> AsyncIterator[RunningBroker]:
    """Run a broker in the current trio task tree, on 127.0.0.1 and a free port.

    Memory storage unless `data_dir` is given (then the files stay for the test to inspect).
    `server_settings` are any other settings `logbroker serve` takes, by their names
    (`logbroker.server.config.Settings`: limits, timeouts, group defaults, `kafka_port`...).
    """
    settings = Settings.from_mapping(
        {
            "host": "127.0.0.1",
            "port": 0,
            "memory": data_dir is None,
            "data_dir": data_dir or "",
            "fsync": fsync,
            "auto_create_topics": auto_create_topics,
            "default_partitions": default_partitions,
            **server_settings,
        }
    )
    broker = settings.open_broker(now_ms=int(time.time() * 1000))
    try:
        async with trio.open_nursery() as nursery:
            server: Server = await nursery.start(Server(broker, settings.server_config()).run)
            try:
                yield RunningBroker(server.address, server, broker)
            finally:
                server.request_shutdown()
    finally:
        broker.close()


class BrokerThread:
    """`run_broker` in a background thread with its own trio loop, as a plain context manager."""

    def __init__(self, **settings: Any) -> None:
        self._settings = settings
        self._ready = threading.Event()
        self._stop: trio.Event | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._running: RunningBroker | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="logbroker-test-broker", daemon=True)

    def __enter__(self) -> RunningBroker:
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error
        assert self._running is not None
        return self._running

    def __exit__(self, *exc: object) -> None:
        if self._stop is not None and self._token is not None:
            trio.from_thread.run_sync(self._stop.set, trio_token=self._token)
        self._thread.join()

    def _main(self) -> None:
        try:
            trio.run(self._serve)
        except BaseException as exc:  # reported to the thread that waits in __enter__
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        self._stop = trio.Event()
        self._token = trio.lowlevel.current_trio_token()
        async with run_broker(**self._settings) as running:
            self._running = running
            self._ready.set()
            await self._stop.wait()
