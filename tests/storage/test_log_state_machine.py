"""A Hypothesis state machine of PartitionLog against a plain list of records.

Rules append, read, look up timestamps, roll, apply retention, flush, reopen and crash (lose
power through the FaultFS seam, tearing unsynced writes); after every step the log must agree
with the model. It runs once with memory segments and once with file segments.
"""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from logbroker.records import encode_batch, iter_records
from logbroker.storage.config import LogConfig
from logbroker.storage.fault_fs import FaultFileSystem
from logbroker.storage.log import PartitionLog

DIR = "/data/t-0"


class LogMachine(RuleBasedStateMachine):
    durable = False

    def __init__(self) -> None:
        super().__init__()
        self.fs = FaultFileSystem(seed=0)
        self.config = LogConfig(segment_bytes=400, index_interval_bytes=150)
        self.log = self._open()
        self.records: list[tuple[int, bytes, int]] = []  # (offset, value, timestamp) from the log start
        self.start = 0
        self.flushed = 0
        self.counter = 0

    def _open(self) -> PartitionLog:
        if self.durable:
            return PartitionLog.open(self.fs, DIR, self.config, now_ms=0)
        return PartitionLog.in_memory(self.config)

    @property
    def end(self) -> int:
        return self.start + len(self.records)

    @rule(batches=st.lists(st.lists(st.integers(0, 100), min_size=1, max_size=5), min_size=1, max_size=3))
    def append(self, batches: list[list[int]]) -> None:
        data = b""
        new = []
        offset = self.end
        for timestamps in batches:
            values = []
            for ts in timestamps:
                values.append(b"r%d" % self.counter)
                new.append((offset, values[-1], ts))
                self.counter += 1
                offset += 1
            data += encode_batch(values, timestamps=timestamps)
        assert self.log.append(data, now_ms=0) == self.end
        self.records.extend(new)

    @rule(data=st.data())
    def read(self, data: st.DataObject) -> None:
        if not self.records:
            assert self.log.read(self.start, 100) == b""
            return
        at = data.draw(st.integers(self.start, self.end - 1))
        max_bytes = data.draw(st.integers(1, 1500))
        got = list(iter_records(self.log.read(at, max_bytes)))
        assert got, "a read below the end returns at least one batch"
        assert got[0].offset <= at < got[0].offset + 5 + 10
        assert any(r.offset == at for r in got)
        first = got[0].offset - self.start
        assert [(r.offset, r.value, r.timestamp) for r in got] == self.records[first : first + len(got)]

    @rule(timestamp=st.integers(-1, 102))
    def lookup_timestamp(self, timestamp: int) -> None:
        want = next((o for o, _, ts in self.records if ts >= timestamp), None)
        assert self.log.offset_for_timestamp(timestamp) == want

    @rule()
    def roll(self) -> None:
        self.log.roll(0)

    @rule(limit=st.integers(0, 1500))
    def retention(self, limit: int) -> None:
        self.log.config = LogConfig(segment_bytes=400, index_interval_bytes=150, retention_bytes=limit)
        self.log.apply_retention(0)
        self.log.config = self.config
        new_start = self.log.log_start_offset
        assert new_start >= self.start
        assert new_start in [s.base_offset for s in self.log.segments]
        del self.records[: new_start - self.start]
        self.start = new_start

    @rule()
    def flush(self) -> None:
        self.flushed = self.log.flush()
        assert self.flushed == self.end

    @precondition(lambda self: self.durable)
    @rule()
    def reopen(self) -> None:
        self.log.close()
        self.log = self._open()
        assert self.log.recovery is not None
        assert self.log.recovery.clean_shutdown
        self.flushed = self.end

    @precondition(lambda self: self.durable)
    @rule(tear=st.booleans())
    def crash(self, tear: bool) -> None:
        self.fs.power_loss(tear=tear)
        self.log = self._open()
        assert self.log.log_start_offset >= self.start, "the log start moved back"
        kept = self.log.next_offset
        assert self.flushed <= kept <= self.end, (self.flushed, kept, self.end)
        del self.records[kept - self.start :]
        assert self.log.log_start_offset <= max(kept, self.start)
        del self.records[: self.log.log_start_offset - self.start]
        self.start = self.log.log_start_offset
        self.flushed = kept

    @invariant()
    def agrees_with_the_model(self) -> None:
        assert self.log.log_start_offset == self.start
        assert self.log.next_offset == self.end
        assert self.log.flushed_offset >= (self.flushed if self.durable else self.end)

    def teardown(self) -> None:
        self.log.close()


class FileLogMachine(LogMachine):
    durable = True


TestMemoryLog = LogMachine.TestCase
TestFileLog = FileLogMachine.TestCase
TestMemoryLog.settings = settings(settings(), stateful_step_count=40)
TestFileLog.settings = settings(settings(), stateful_step_count=40)
