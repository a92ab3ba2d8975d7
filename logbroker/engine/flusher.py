"""Group commit: one fsync covers every append that arrived while the previous one ran.

Under `fsync=always` an append pokes the flusher and its ack waits in `wait_durable`. The flusher
takes every partition appended to since its last round, prepares one flush job each, runs the
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

from logbroker.broadcast import Broadcast
from logbroker.broker.broker import Broker, Durable, TopicPartition
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
    def __init__(self, broker: Broker, on_flushed: Callable[[str, int], None]) -> None:
        self._broker = broker
        self._policy = broker.options.fsync
        #: An ack waits for the fsync (file storage under `always`); otherwise it is given at once.
        self.acks_wait = broker.durable and self._policy.mode == "always"
        self._on_flushed = on_flushed
        self._wakeup = trio.Event()  # a latch: set by `poke`, taken by the next round
        self._round_done = Broadcast()
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
        """fsync every partition appended to since the last round, in a worker thread."""
        jobs: list[tuple[TopicPartition, PartitionLog, FlushJob]] = []
        for tp, log in self._broker.take_dirty():
            try:
                job = log.prepare_flush()
            except LogReadOnlyError as exc:  # the log is read-only now; its waiters are told
                logger.error("%s", exc.message)
                self._on_flushed(*tp)
                continue
            if job is not None:
                jobs.append((tp, log, job))
        if jobs:
            errors = await trio.to_thread.run_sync(_run_jobs, [job for _, _, job in jobs])
            self.rounds += 1
            self.fsyncs += len(jobs)
            for (tp, log, job), error in zip(jobs, errors, strict=True):
                if error is None:
                    log.complete_flush(job)
                else:
                    log.fail_flush(job, error)
                    logger.error("fsync failed; the partition takes no more writes until restart: %s", error)
                self._on_flushed(*tp)
        self._round_done.fire()

    async def wait_durable(self, pending: Durable | None) -> None:
        """Return once an append is as durable as the fsync policy says it must be before it is
        acked: fsynced under `always` (file storage), at once otherwise."""
        if pending is None or not self.acks_wait:
            return
        topic, partition, offset = pending.topic, pending.partition, pending.next_offset
        while self._broker.flushed_offset(topic, partition) < offset:
            reason = self._broker.read_only_reason(topic, partition)
            if reason is not None:
                raise LogReadOnlyError(f"the records were not made durable: {reason}")
            self.poke()
            await self._round_done.wait()
