"""A Hypothesis state machine of idempotent produce against a plain model, across restarts.

The model keeps every batch it expects in the log, in order, and derives Kafka's rules from that
list alone: a producer's epoch and the sequences of its last five batches of that epoch. Rules
produce (in sequence, with gaps, new epochs, several batches at once), retry earlier batches,
snapshot, restart cleanly, die without closing (kill -9) and lose power, with or without a flush
first. After a power loss the model keeps the batches the log kept; the broker's state must then
agree with the model rebuilt from those batches.
"""

from __future__ import annotations

from typing import NamedTuple

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from logbroker.broker.broker import Broker, BrokerOptions, FsyncPolicy
from logbroker.errors import (
    InvalidProducerEpochError,
    InvalidRecordError,
    LogbrokerError,
    OutOfOrderSequenceError,
)
from logbroker.records import encode_batch, iter_records
from logbroker.storage.fault_fs import FaultFileSystem

NOW = 1_767_225_600_000
MAX_SEQUENCE = (1 << 31) - 1
OPTIONS = BrokerOptions(fsync=FsyncPolicy("always"))


class Sent(NamedTuple):
    pid: int
    epoch: int
    seq: int
    count: int
    data: bytes

    @property
    def last_seq(self) -> int:
        return (self.seq + self.count - 1) % (MAX_SEQUENCE + 1)


class Stored(NamedTuple):
    batch: Sent
    base_offset: int


def expected_outcome(log: list[Stored], batches: list[Sent]) -> type[LogbrokerError] | tuple[int, int] | None:
    """What producing `batches` in one request must do: an error class, a duplicate's original
    (base, next) offsets, or None for an append."""
    history: dict[int, list[Stored]] = {}  # per producer: its batches of its latest epoch
    for stored in log:
        if stored.batch.pid >= 0:
            mine = history.setdefault(stored.batch.pid, [])
            if mine and mine[-1].batch.epoch != stored.batch.epoch:
                mine.clear()
            mine.append(stored)
    pending: dict[int, tuple[int, int]] = {}
    duplicates: list[Stored] = []
    fresh = 0
    for sent in batches:
        if sent.pid < 0:
            fresh += 1
            continue
        known = pending.get(sent.pid)
        if known is None and sent.pid in history:
            mine = history[sent.pid]
            epoch = mine[-1].batch.epoch
            if sent.epoch == epoch:
                same = [s for s in mine[-5:] if (s.batch.seq, s.batch.last_seq) == (sent.seq, sent.last_seq)]
                if same:
                    duplicates.append(same[0])
                    continue
            known = (epoch, mine[-1].batch.last_seq)
        if known is not None:
            epoch, last = known
            if sent.epoch < epoch:
                return InvalidProducerEpochError
            if sent.epoch > epoch and sent.seq != 0:
                return OutOfOrderSequenceError
            if sent.epoch == epoch and sent.seq != (last + 1) % (MAX_SEQUENCE + 1):
                return OutOfOrderSequenceError
        pending[sent.pid] = (sent.epoch, sent.last_seq)
        fresh += 1
    if not duplicates:
        return None
    if fresh:
        return InvalidRecordError
    last = duplicates[-1]
    return duplicates[0].base_offset, last.base_offset + last.batch.count


class IdempotenceMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.fs = FaultFileSystem(seed=0)
        self.broker = self._open()
        self.broker.create_topic("t", config={"segment.bytes": "1024"}, now_ms=NOW)
        self.log: list[Stored] = []
        self.sent: list[Sent] = []
        self.next_seq: dict[tuple[int, int], int] = {}
        self.counter = 0

    def _open(self) -> Broker:
        return Broker.open("/data", OPTIONS, fs=self.fs, now_ms=NOW)

    @property
    def end(self) -> int:
        return self.log[-1].base_offset + self.log[-1].batch.count if self.log else 0

    def _batch(self, pid: int, epoch: int, seq: int, count: int) -> Sent:
        self.counter += 1
        values = [b"%d-%d" % (self.counter, i) for i in range(count)]
        data = encode_batch(values, timestamp=NOW, producer_id=pid, producer_epoch=epoch, base_sequence=seq)
        return Sent(pid, epoch, seq, count, data)

    def _produce(self, batches: list[Sent]) -> None:
        want = expected_outcome(self.log, batches)
        data = b"".join(s.data for s in batches)
        self.sent.extend(s for s in batches if s.pid >= 0)
        if isinstance(want, type):
            try:
                self.broker.produce("t", 0, data, now_ms=NOW)
            except want:
                return
            raise AssertionError(f"expected {want.__name__}")
        result = self.broker.produce("t", 0, data, now_ms=NOW)
        if want is None:
            assert not result.duplicate
            assert result.base_offset == self.end
            offset = result.base_offset
            for sent in batches:
                self.log.append(Stored(sent, offset))
                offset += sent.count
                if sent.pid >= 0:
                    self.next_seq[(sent.pid, sent.epoch)] = (sent.last_seq + 1) % (MAX_SEQUENCE + 1)
        else:
            assert result.duplicate
            assert (result.base_offset, result.next_offset) == want

    @rule(
        pid=st.sampled_from([-1, 1, 1, 2, 3]),
        epoch=st.sampled_from([0, 0, 0, 1, 2]),
        seq=st.one_of(st.none(), st.sampled_from([0, 1, 2, 5, MAX_SEQUENCE - 1, MAX_SEQUENCE])),
        count=st.integers(1, 3),
    )
    def produce(self, pid: int, epoch: int, seq: int | None, count: int) -> None:
        """`seq` None: the sequence that comes next for this producer and epoch."""
        if pid < 0:
            seq, epoch = -1, -1
        elif seq is None:
            seq = self.next_seq.get((pid, epoch), 0)
        self._produce([self._batch(pid, epoch, seq, count)])

    @rule(pids=st.lists(st.sampled_from([-1, 1, 2]), min_size=2, max_size=3), count=st.integers(1, 2))
    def produce_several_batches(self, pids: list[int], count: int) -> None:
        batches = []
        following = dict(self.next_seq)
        for pid in pids:
            if pid < 0:
                batches.append(self._batch(-1, -1, -1, count))
                continue
            seq = following.get((pid, 0), 0)
            batches.append(self._batch(pid, 0, seq, count))
            following[(pid, 0)] = (seq + count) % (MAX_SEQUENCE + 1)
        self._produce(batches)

    @rule(data=st.data())
    def retry(self, data: st.DataObject) -> None:
        if not self.sent:
            return
        index = data.draw(st.integers(0, len(self.sent) - 1))
        if data.draw(st.booleans()) and index + 1 < len(self.sent):
            self._produce([self.sent[index], self.sent[index + 1]])
        else:
            self._produce([self.sent[index]])

    @rule()
    def snapshot(self) -> None:
        self.broker.snapshot_producer_state(NOW)

    @rule()
    def flush(self) -> None:
        for _, log in self.broker.take_dirty():
            log.flush()

    @rule()
    def restart(self) -> None:
        self.broker.close()
        self.broker = self._open()

    @rule()
    def kill(self) -> None:
        """The process dies; the page cache survives."""
        self.fs.kill()
        self.broker = self._open()

    @rule(tear=st.booleans())
    def power_loss(self, tear: bool) -> None:
        flushed = self.broker.log("t", 0).flushed_offset
        self.fs.power_loss(tear=tear)
        self.broker = self._open()
        kept = self.broker.log("t", 0).next_offset
        assert flushed <= kept <= self.end
        self.log = [s for s in self.log if s.base_offset < kept]
        assert self.end == kept, "recovery cut inside a batch"
        self.next_seq = {}
        for stored in self.log:
            if stored.batch.pid >= 0:
                self.next_seq[(stored.batch.pid, stored.batch.epoch)] = (stored.batch.last_seq + 1) % (
                    MAX_SEQUENCE + 1
                )

    @invariant()
    def the_log_holds_what_the_model_holds(self) -> None:
        log = self.broker.log("t", 0)
        assert log.next_offset == self.end

    def teardown(self) -> None:
        stored = [r.value for r in iter_records(self.broker.log("t", 0).read(0, 1 << 30))]
        assert len(stored) == self.end
        assert len(set(stored)) == len(stored), "a batch was stored twice"
        self.broker.close()


TestIdempotence = IdempotenceMachine.TestCase
TestIdempotence.settings = settings(settings(), stateful_step_count=40)
