"""Failpoints: for every named point of `logbroker/failpoints.py`, a broker on the fault-injecting
file system runs the operation that passes the point, "dies" there (and the power goes, half the
time tearing unsynced tails), and is opened again. The state it then shows must be the state
before the operation or after it, never a mix:

- the topics are those before or those after (a create or delete is all or nothing);
- every partition's records are what they were (everything was fsynced before the operation),
  from a log start that never moved back, possibly extended by the batch being appended;
- committed offsets are what they were (an `__offsets` compaction loses and invents nothing);
- no `.tmp` file is left anywhere, and the broker takes records again.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import attrs

from logbroker import failpoints
from logbroker.broker.broker import Broker, BrokerOptions
from logbroker.groups.coordinator import GroupCoordinator
from logbroker.records.codec import encode_batch, iter_records
from logbroker.storage.fault_fs import FaultFileSystem
from tools.campaigns.history import Outcome

__all__ = ["FailpointsResult", "run_failpoints"]

DATA = "/data"
NOW = 1_767_225_600_000
Records = list[tuple[int, bytes]]


@attrs.frozen
class State:
    topics: dict[str, list[tuple[int, Records]]]  # name -> per partition (log start, records)
    committed: dict[tuple[str, int], int]


@attrs.define
class FailpointsResult(Outcome):
    cases: int = 0
    crashed: int = 0

    def summary(self) -> str:
        verdict = self.verdict()
        return f"{self.cases} cases over {len(failpoints.POINTS)} failpoints, {self.crashed} stopped at their point; {verdict}"


def _open(fs: FaultFileSystem) -> tuple[Broker, GroupCoordinator]:
    broker = Broker.open(DATA, BrokerOptions(), fs=fs, now_ms=NOW)
    return broker, GroupCoordinator(broker, now_ms=NOW)


def _operation(
    point: str,
) -> tuple[Callable[[Broker, GroupCoordinator], object], Callable[[set[str]], set[str]]]:
    """What passes `point`, and the topics it leaves."""
    same: Callable[[set[str]], set[str]] = lambda topics: topics  # noqa: E731
    if point == "append.after_write":
        return lambda b, _: b.produce(
            "t", 0, encode_batch([b"new-1", b"new-2"], timestamp=NOW), now_ms=NOW
        ), same
    if point.startswith("roll."):
        return lambda b, _: b.log("t", 0).roll(NOW), same
    if point == "retention.after_log_start":
        return lambda b, _: b.apply_retention(NOW), same
    if point == "compaction.after_rewrite":
        return lambda _, groups: groups.store.compact(NOW), same
    if point in ("metadata.before_rename", "topic.create.after_partitions"):
        return lambda b, _: b.create_topic("u", 2, now_ms=NOW), lambda topics: topics | {"u"}
    if point == "topic.delete.after_catalogue":
        return lambda b, _: b.delete_topic("t"), lambda topics: topics - {"t"}
    raise ValueError(point)


def _setup(fs: FaultFileSystem, rng: random.Random) -> tuple[Broker, GroupCoordinator]:
    """A topic `t` of several segments (retention by bytes keeps the last few), a group with
    committed offsets, everything fsynced."""
    broker, groups = _open(fs)
    broker.create_topic("t", 1, {"segment.bytes": "1024", "retention.bytes": "1024"}, now_ms=NOW)
    for n in range(rng.randint(40, 60)):
        broker.produce("t", 0, encode_batch([b"record-%d" % n] * 3, timestamp=NOW), now_ms=NOW)
    for group in ("g1", "g2"):
        groups.classic.commit_offsets(
            group, -1, "", {("t", 0): (rng.randint(0, 30), None)}, now=0, now_ms=NOW
        )
    for topic in broker.list_topics(include_internal=True):
        for p in range(topic.partitions):
            broker.log(topic.name, p).flush()
    return broker, groups


def _state(broker: Broker, groups: GroupCoordinator) -> State:
    topics = {}
    for topic in broker.list_topics():
        partitions = []
        for p in range(topic.partitions):
            log = broker.log(topic.name, p)
            data = log.read(log.log_start_offset, 1 << 30)
            partitions.append(
                (log.log_start_offset, [(r.offset, r.value or b"") for r in iter_records(data)])
            )
        topics[topic.name] = partitions
    committed = {(row.group, row.partition): row.committed for row in groups.admin.offset_rows(None, "t")}
    return State(topics, committed)


def _tmp_files(fs: FaultFileSystem, path: str = DATA) -> list[str]:
    found = []
    for name in fs.list_dir(path):
        child = f"{path}/{name}"
        if fs.is_dir(child):
            found += _tmp_files(fs, child)
        elif name.endswith(".tmp"):
            found.append(child)
    return found


def _compare(point: str, before: State, after: State, expected_topics: set[str]) -> list[str]:
    problems = []
    if set(after.topics) not in (set(before.topics), expected_topics):
        problems.append(f"topics {sorted(after.topics)}: neither before {sorted(before.topics)} nor after")
    for name in set(before.topics) & set(after.topics):
        for p, ((start0, records0), (start1, records1)) in enumerate(
            zip(before.topics[name], after.topics[name], strict=False)
        ):
            if start1 < start0:
                problems.append(f"{name}-{p}: the log start moved back from {start0} to {start1}")
            kept = [r for r in records0 if r[0] >= start1]
            if records1[: len(kept)] != kept:
                problems.append(f"{name}-{p}: records before the operation changed")
            if records1 and [o for o, _ in records1] != list(range(start1, start1 + len(records1))):
                problems.append(f"{name}-{p}: offsets are not contiguous from {start1}")
    if "t" in after.topics and after.committed != before.committed:
        problems.append(f"committed offsets {after.committed}, before {before.committed}")
    return [f"{point}: {problem}" for problem in problems]


def run_failpoints(
    *, rounds: int = 2, seed: int = 0, log: Callable[[str], None] = lambda _: None
) -> FailpointsResult:
    result = FailpointsResult()
    for round_number in range(rounds):
        for point in failpoints.POINTS:
            rng = random.Random(f"{seed}-{round_number}-{point}")
            fs = FaultFileSystem(seed=rng.randrange(1 << 30))
            broker, groups = _setup(fs, rng)
            before = _state(broker, groups)
            operation, topics_after = _operation(point)
            result.cases += 1
            failpoints.arm(point)
            try:
                operation(broker, groups)
            except failpoints.FailpointCrash:
                result.crashed += 1
            else:
                result.violations.append(f"{point}: the operation never passed the point")
            finally:
                failpoints.disarm()
            fs.power_loss(tear=rng.random() < 0.5)
            reopened, regrouped = _open(fs)
            try:
                after = _state(reopened, regrouped)
                result.violations += _compare(point, before, after, topics_after(set(before.topics)))
                if stray := _tmp_files(fs):
                    result.violations.append(f"{point}: stray files {stray}")
                if "t" in after.topics:
                    reopened.produce("t", 0, encode_batch([b"after"], timestamp=NOW), now_ms=NOW)
            finally:
                reopened.close()
            log(f"{point} (round {round_number + 1}): {len(result.violations)} violations so far")
    return result
