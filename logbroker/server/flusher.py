"""Group commit: one fsync covers every append that arrived while the previous one ran.

Under `fsync=always` a produce appends, pokes the flusher and waits for `wait_flushed`. The
flusher takes every log appended to since its last round, prepares one flush job each, runs the
fsyncs in a worker thread (the event loop keeps serving meanwhile, and appends made meanwhile wait
for the next round), then records the outcome and wakes the waiters. Under `interval:<ms>` the
same round runs on a timer and nobody waits for it; under `never` it runs only at shutdown.

A failed fsync makes that log read-only (see `PartitionLog.fail_flush`); waiters on it get
`LogReadOnlyError`, never an ack.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import trio

from logbroker.broker.broker import Broker
from logbroker.errors import LogReadOnlyError
from logbroker.storage.log import FlushJob, PartitionLog

__all__ = ["Flusher"]

logger = logging.getLogger("logbroker.flush")


def _run_jobs(jobs: list[FlushJob]) -> list[OSError | None]:
    """Run in a worker thread: every job's fsync, each failure kept apart."""
    errors: list[OSError | None] = []
    for job in jobs:
        try:
            job.run()
            errors.append(None)
        except OSError as exc:
            errors.append(exc)
    return errors


class Flusher:
    def __init__(self, broker: Broker, on_flushed: Callable[[PartitionLog], None]) -> None:
        self._broker = broker
        self._policy = broker.options.fsync
        self._on_flushed = on_flushed
        self._wakeup = trio.Event()
        self._round_done = trio.Event()
        #: Rounds that fsynced something, and fsyncs issued (a round fsyncs each dirty log once).
        self.rounds = 0
        self.fsyncs = 0

    def poke(self) -> None:
        """An append wants to be made durable."""
        self._wakeup.set()

    async def run(self) -> None:
        """The flush loop; runs until cancelled."""
        if self._policy.mode == "never" or not self._broker.durable:
            await trio.sleep_forever()
        while True:
            if self._policy.mode == "always":
                await self._wakeup.wait()
            else:
                await trio.sleep(self._policy.interval_ms / 1000)
            self._wakeup = trio.Event()
            await self.flush_round()

    async def flush_round(self) -> None:
        """fsync every log appended to since the last round, in a worker thread."""
        jobs: list[tuple[PartitionLog, FlushJob]] = []
        for log in self._broker.take_dirty():
            try:
                job = log.prepare_flush()
            except LogReadOnlyError as exc:  # the log is read-only now; its waiters are told
                logger.error("%s", exc.message)
                self._on_flushed(log)
                continue
            if job is not None:
                jobs.append((log, job))
        if jobs:
            errors = await trio.to_thread.run_sync(_run_jobs, [job for _, job in jobs])
            self.rounds += 1
            self.fsyncs += len(jobs)
            for (log, job), error in zip(jobs, errors, strict=True):
                if error is None:
                    log.complete_flush(job)
                else:
                    log.fail_flush(job, error)
                    logger.error("fsync failed; the partition takes no more writes until restart: %s", error)
                self._on_flushed(log)
        done, self._round_done = self._round_done, trio.Event()
        done.set()

    async def wait_flushed(self, log: PartitionLog, offset: int) -> None:
        """Return once everything below `offset` in `log` is durable."""
        while log.flushed_offset < offset:
            if log.read_only_reason is not None:
                raise LogReadOnlyError(f"the records were not made durable: {log.read_only_reason}")
            round_done = self._round_done
            self.poke()
            await round_done.wait()
