"""`Broker`: topics of partition logs, and the produce, fetch and list-offsets operations.

The broker core is synchronous and reads no clock: time comes in as `now_ms`. Waiting - for an
fsync before an ack, for data in a long poll - is the trio server's business; the core says what
is durable (`flushed_offset` of each log) and what consumers may see (`high_watermark`).

What consumers may see depends on the fsync policy: under `always` only what is fsynced (so a
record a consumer read can never vanish in a power loss and have its offset reused); under
`interval` and `never` everything appended.
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Callable, Iterator, Mapping

import attrs

from logbroker import failpoints
from logbroker.broker.names import check_topic_name, is_internal
from logbroker.broker.options import BrokerOptions, FsyncPolicy
from logbroker.broker.producer_state import (
    PRODUCER_ID_FILE,
    ProducerIdAllocator,
    ProducerStateTable,
    load_producer_state,
    save_producer_state,
)
from logbroker.broker.topic_config import TopicConfig
from logbroker.broker.topics import CATALOGUE_FILE, TopicEntry, TopicStore
from logbroker.errors import (
    InvalidConfigError,
    InvalidPartitionsError,
    InvalidRecordError,
    InvalidRequestError,
    InvalidTimestampError,
    InvalidTopicError,
    MessageTooLargeError,
    OffsetOutOfRangeError,
    StorageError,
    TopicAlreadyExistsError,
    UnknownTopicOrPartitionError,
)
from logbroker.records.batch import BatchHeader, validate_batches
from logbroker.storage.fs import Buffer, DirectoryLock, FileSystem, OsFileSystem, empty_dir, remove_tree
from logbroker.storage.log import PartitionLog
from logbroker.storage.partition_dir import RecoveryReport

__all__ = [
    "Broker",
    "BrokerOptions",
    "Durable",
    "FetchResult",
    "FsyncPolicy",
    "PartitionInfo",
    "ProduceResult",
    "TopicInfo",
    "TopicPartition",
]

MAX_PARTITIONS = 10_000
_PARTITION_DIR = re.compile(r"(?P<topic>.+)-(?P<partition>\d+)")
#: A partition directory renamed so, and emptied, stands for a delete of its topic to finish.
DELETED_SUFFIX = ".deleted"


def _out_of_space(exc: BaseException) -> bool:
    cause = exc.__cause__
    return isinstance(cause, OSError) and cause.errno == errno.ENOSPC


@attrs.frozen
class PartitionInfo:
    partition: int
    log_start_offset: int
    high_watermark: int
    log_end_offset: int
    size_bytes: int
    segments: int
    damage: str | None = None
    read_only: str | None = None


@attrs.frozen
class TopicInfo:
    name: str
    partitions: int
    config: dict[str, str]
    internal: bool
    created_ms: int
    partition_info: list[PartitionInfo] = attrs.Factory(list)


TopicPartition = tuple[str, int]


@attrs.frozen
class Durable:
    """An append that counts once partition `topic`-`partition` is durable up to `next_offset`
    (under `fsync=always`, what an ack waits for; see `Broker.flushed_offset`)."""

    topic: str
    partition: int
    next_offset: int


@attrs.frozen
class ProduceResult:
    topic: str
    partition: int
    base_offset: int
    next_offset: int
    #: The partition's log start after the append (Kafka's produce answer carries it).
    log_start_offset: int
    #: Every batch was a retry of batches an idempotent producer had stored before: nothing was
    #: appended, and the offsets are those of the original append.
    duplicate: bool = False

    @property
    def durable(self) -> Durable:
        return Durable(self.topic, self.partition, self.next_offset)


@attrs.frozen
class FetchResult:
    data: bytes
    high_watermark: int
    log_start_offset: int
    log_end_offset: int


@attrs.define
class _Topic:
    entry: TopicEntry
    config: TopicConfig
    logs: list[PartitionLog]
    #: The idempotent-producer state of each partition, beside its log.
    producers: list[ProducerStateTable]


class Broker:
    """Topics and their partition logs, in a data directory or in memory."""

    def __init__(
        self,
        options: BrokerOptions,
        fs: FileSystem | None,
        data_dir: str | None,
        now_ms: int,
        lock: DirectoryLock | None = None,
    ) -> None:
        self.options = options
        self._fs = fs
        self.data_dir = data_dir
        #: The data directory's lock, held until `close`.
        self._lock = lock
        self._store = TopicStore(fs, data_dir)
        self._producer_ids = ProducerIdAllocator(
            fs, os.path.join(data_dir, PRODUCER_ID_FILE) if data_dir is not None else None
        )
        self._topics: dict[str, _Topic] = {}
        self._dirty: dict[TopicPartition, PartitionLog] = {}
        #: What opening each partition found (file brokers), and anything else start-up did or
        #: found (a disk already below the free-space reserve) that an operator should hear.
        self.recovery: list[RecoveryReport] = []
        self.notes: list[str] = []
        #: Counts topic creations and deletions; `topic_listeners` are called after each, with
        #: the topic's name (consumer groups drop the offsets of a deleted topic).
        self.topics_version = 0
        self.topic_listeners: list[Callable[[str], None]] = []
        self._finish_deletes()
        for entry in self._store:
            self._topics[entry.name] = self._open_topic(entry, now_ms)
        self._remove_leftovers()
        free = self._free_below_reserve(0)
        if free is not None:
            self.notes.append(
                f"only {_size(free)} free on the disk of {self.data_dir}, less than the "
                f"{_size(self.options.min_free_bytes)} kept for commits and metadata (min_free_bytes): "
                "every produce is refused (KAFKA_STORAGE_ERROR) until more is free; free space, "
                "delete topics, or lower min_free_bytes"
            )

    @classmethod
    def open(
        cls, data_dir: str, options: BrokerOptions | None = None, *, fs: FileSystem | None = None, now_ms: int
    ) -> Broker:
        """Open (or create) the broker's data directory and every partition log in it.

        The directory is locked until `close`: one broker per data directory, whoever opens it
        (`logbroker serve`, `logbroker.testing`, an application embedding the broker); a second
        opener, in this process or another, gets a `StorageError` that says so.
        """
        fs = fs or OsFileSystem()
        try:
            fs.make_dirs(data_dir)
        except OSError as exc:
            raise StorageError(
                f"{data_dir}: cannot create the data directory: {exc.strerror or exc}"
            ) from exc
        try:
            lock = fs.lock(data_dir)
        except BlockingIOError:
            raise StorageError(
                f"{data_dir} is locked by another process: a logbroker (`serve`, or a broker "
                "embedded in a program) is using it; one broker per data directory"
            ) from None
        except OSError as exc:
            raise StorageError(f"{data_dir}: cannot lock the data directory: {exc.strerror or exc}") from exc
        try:
            return cls(options or BrokerOptions(), fs, os.path.abspath(data_dir), now_ms, lock)
        except BaseException:
            lock.release()
            raise

    @classmethod
    def in_memory(cls, options: BrokerOptions | None = None, *, now_ms: int = 0) -> Broker:
        """A broker whose topics live in memory only."""
        return cls(options or BrokerOptions(), None, None, now_ms)

    @property
    def durable(self) -> bool:
        return self._fs is not None

    # -- topics --------------------------------------------------------------------------------

    def check_new_topic(
        self,
        name: str,
        partitions: int | None = None,
        config: Mapping[str, str] | None = None,
        *,
        internal_ok: bool = False,
    ) -> tuple[int, dict[str, str]]:
        """Everything `create_topic` checks before it writes anything; returns the partition
        count and the settings. (CreateTopics with validate_only stops here.)"""
        check_topic_name(name, internal_ok=internal_ok)
        if name in self._topics:
            raise TopicAlreadyExistsError(f"topic {name!r} already exists")
        count = self.options.default_partitions if partitions is None else partitions
        if not 1 <= count <= MAX_PARTITIONS:
            raise InvalidPartitionsError(f"a topic has 1 to {MAX_PARTITIONS} partitions, not {count}")
        overrides = {str(k): str(v) for k, v in (config or {}).items()}
        self.options.topic_defaults.with_overrides(overrides)
        return count, overrides

    def create_topic(
        self,
        name: str,
        partitions: int | None = None,
        config: Mapping[str, str] | None = None,
        *,
        now_ms: int,
        internal_ok: bool = False,
    ) -> TopicInfo:
        count, overrides = self.check_new_topic(name, partitions, config, internal_ok=internal_ok)
        entry = TopicEntry(name, count, overrides, now_ms)
        if self._fs is not None and self.data_dir is not None:
            for partition in range(count):
                leftover = self._partition_dir(name, partition)
                if self._fs.exists(leftover):  # from a delete a crash interrupted
                    remove_tree(self._fs, leftover)
        topic = self._open_topic(entry, now_ms)
        try:
            failpoints.hit("topic.create.after_partitions")
            self._store.add(entry)
        except StorageError:
            for log in topic.logs:
                log.close()
            raise
        self._topics[name] = topic
        self._topics_changed(name)
        return self._info(topic, details=True)

    def alter_topic_config(
        self,
        name: str,
        changes: Mapping[str, str | None],
        *,
        replace: bool = False,
        validate_only: bool = False,
    ) -> TopicInfo:
        """Change a topic's settings (Kafka's names): a value sets one, None puts it back to
        the default; with `replace`, settings not named go back to their defaults too (Kafka's
        AlterConfigs, as against IncrementalAlterConfigs). Checked whole before anything
        changes, saved in the catalogue, and in force at once: the next append rolls by the new
        segment settings, the next retention check deletes by the new retention."""
        if is_internal(name):
            raise InvalidTopicError(f"{name!r} is internal to the broker: its settings are the broker's")
        topic = self._topic(name)
        overrides = {} if replace else dict(topic.entry.config)
        for key, value in changes.items():
            if value is None:
                overrides.pop(str(key), None)
            else:
                overrides[str(key)] = str(value)
        config = self.options.topic_defaults.with_overrides(overrides)  # unknown names, bad values
        unknown = [
            str(key) for key, value in changes.items() if value is None and not TopicConfig.known(str(key))
        ]
        if unknown:
            raise InvalidConfigError(f"unknown topic setting {unknown[0]!r}")
        if validate_only:
            return self._info(topic, details=True)
        entry = attrs.evolve(topic.entry, config=overrides)
        self._store.add(entry)  # replaces the topic's entry; raises before anything changed
        topic.entry, topic.config = entry, config
        log_config = config.log_config()
        for log in topic.logs:
            log.config = log_config
        return self._info(topic, details=True)

    def delete_topic(self, name: str) -> None:
        """Forget the topic and delete its files before returning.

        On a full disk the catalogue cannot be rewritten before space is freed, so the partition
        directories are first renamed `<dir>.deleted` (a rename takes no space, and a start
        finishes a delete such a directory stands for) and emptied; then the catalogue is saved.
        """
        if is_internal(name):
            raise InvalidTopicError(f"{name!r} is internal to the broker and cannot be deleted")
        topic = self._topic(name)
        try:
            self._store.remove(name)
            full_disk = False
        except StorageError as exc:
            if self._fs is None or not _out_of_space(exc):
                raise
            full_disk = True
        del self._topics[name]
        self._topics_changed(name)
        for partition, log in enumerate(topic.logs):
            self._dirty.pop((name, partition), None)
            try:
                log.close()
            except StorageError:
                pass  # its files are deleted next
        if self._fs is None:
            return
        dirs = [self._partition_dir(name, partition) for partition in range(len(topic.logs))]
        try:
            if full_disk:
                for path in dirs:
                    self._fs.rename(path, path + DELETED_SUFFIX)
                    self._fs.fsync_dir(os.path.dirname(path))
                dirs = [path + DELETED_SUFFIX for path in dirs]
                for path in dirs:
                    empty_dir(self._fs, path)
                self._store.remove(name)
            failpoints.hit("topic.delete.after_catalogue")
            for path in dirs:
                remove_tree(self._fs, path)
        except (OSError, StorageError) as exc:
            reason = exc.message if isinstance(exc, StorageError) else exc.strerror or str(exc)
            raise StorageError(
                f"topic {name!r} is deleted but not all of it could be removed yet ({reason}); "
                "the rest is removed at the next start"
            ) from exc

    def list_topics(self, *, include_internal: bool = False) -> list[TopicInfo]:
        return [
            self._info(t, details=False)
            for name, t in sorted(self._topics.items())
            if include_internal or not is_internal(name)
        ]

    def describe_topic(self, name: str) -> TopicInfo:
        return self._info(self._topic(name), details=True)

    def partition_count(self, name: str) -> int:
        return len(self._topic(name).logs)

    def auto_create_topic(self, name: str, *, now_ms: int) -> TopicInfo | None:
        """Create topic `name` on first produce, as Kafka's `auto.create.topics.enable` does:
        with the default partition count and settings, if it does not exist and the broker's
        options allow it. Returns the topic when this call created it, else None. Internal names
        are never created; a name that is not valid raises. Callers say which requests may
        create their topics (a producer's, at the front doors); nothing else creates one."""
        if name in self._topics or not self.options.auto_create_topics or is_internal(name):
            return None
        check_topic_name(name)
        return self.create_topic(name, now_ms=now_ms)

    def has_topic(self, name: str) -> bool:
        return name in self._topics

    # -- data ----------------------------------------------------------------------------------

    def produce(
        self,
        topic: str,
        partition: int,
        data: Buffer,
        *,
        now_ms: int,
        headers: list[BatchHeader] | None = None,
    ) -> ProduceResult:
        """Validate the batches in `data` against the topic's rules and append them. `headers`:
        their headers as `records.batch.validate_batches` returned them, when the caller already
        validated the bytes (they are not parsed again).

        The records are acked once `result.durable` holds (the partition's flushed offset reached
        `next_offset`) under the `always` policy, at once under the others.
        """
        if is_internal(topic):
            raise InvalidTopicError(f"{topic!r} is internal to the broker and takes no records from clients")
        entry = self._topic(topic)
        log = self._log(entry, partition)
        headers = check_batches(data, entry.config, now_ms, topic, headers)
        self._check_free_space(len(data))
        producers = entry.producers[partition]
        duplicate = producers.check(headers)
        if duplicate is not None:
            return ProduceResult(
                topic,
                partition,
                duplicate.base_offset,
                duplicate.next_offset,
                log.log_start_offset,
                duplicate=True,
            )
        base = log.append(data, now_ms, headers=headers)
        producers.record(headers, base, now_ms)
        if self._fs is not None and self.options.fsync.mode != "never":
            self._dirty[topic, partition] = log
        return ProduceResult(topic, partition, base, log.next_offset, log.log_start_offset)

    def _check_free_space(self, size: int) -> None:
        free = self._free_below_reserve(size)
        if free is not None:
            raise StorageError(
                f"no space left for records: {free} bytes free on the disk of {self.data_dir}, and "
                f"{self.options.min_free_bytes} are kept for commits and metadata (min_free_bytes); "
                "delete topics or free space, and produce again"
            )

    def _free_below_reserve(self, size: int) -> int | None:
        """The bytes free on the data directory's disk if writing `size` more would leave less
        than the reserve (`min_free_bytes`); None if it would not, or if it cannot be known."""
        reserve = self.options.min_free_bytes
        if self._fs is None or self.data_dir is None or reserve <= 0:
            return None
        free = self._fs.free_bytes(self.data_dir)
        return free if free is not None and free - size < reserve else None

    def allocate_producer_id(self) -> int:
        """A producer id no one has had, for an idempotent producer (which starts at epoch 0).

        Never repeats, also across restarts and crashes (see `ProducerIdAllocator`); raises
        `StorageError` when the reservation of a new block of ids cannot be written.
        """
        return self._producer_ids.allocate()

    def producer_state(self, topic: str, partition: int) -> ProducerStateTable:
        """The idempotent-producer state of a partition."""
        entry = self._topic(topic)
        self._log(entry, partition)
        return entry.producers[partition]

    def fetch(self, topic: str, partition: int, offset: int, max_bytes: int) -> FetchResult:
        """Whole batches from `offset` up to what consumers may see (see `high_watermark`).

        The first batch comes whole even if larger than `max_bytes` (so a reader always moves
        on); `max_bytes` 0 reads nothing and only reports the partition's offsets.
        """
        if max_bytes < 0:
            raise InvalidRequestError(f"max_bytes must not be negative, not {max_bytes}")
        log = self._log(self._topic(topic), partition)
        high_watermark = self.high_watermark(log)
        end = log.next_offset
        if offset < log.log_start_offset or offset > end:
            raise OffsetOutOfRangeError(offset, log.log_start_offset, end)
        data = (
            log.read(offset, max_bytes, end_offset=high_watermark)
            if offset < high_watermark and max_bytes
            else b""
        )
        return FetchResult(data, high_watermark, log.log_start_offset, end)

    def list_offset(self, topic: str, partition: int, spec: str | int) -> int | None:
        """'earliest', 'latest', or a timestamp (ms): the first offset at or after it, or None."""
        log = self._log(self._topic(topic), partition)
        if spec == "earliest":
            return log.log_start_offset
        if spec == "latest":
            return self.high_watermark(log)
        if isinstance(spec, int) and not isinstance(spec, bool):
            found = log.offset_for_timestamp(spec)
            return found if found is None or found < self.high_watermark(log) else None
        raise InvalidRequestError(f"list offsets takes 'earliest', 'latest' or a timestamp, not {spec!r}")

    def high_watermark(self, log: PartitionLog) -> int:
        """The end of what consumers may see: the flushed offset under `fsync=always`."""
        if self.options.fsync.mode == "always":
            return log.flushed_offset
        return log.next_offset

    def log(self, topic: str, partition: int) -> PartitionLog:
        return self._log(self._topic(topic), partition)

    def logs(self) -> Iterator[tuple[str, int, PartitionLog]]:
        for name, topic in self._topics.items():
            for partition, log in enumerate(topic.logs):
                yield name, partition, log

    def note_appended(self, topic: str, partition: int) -> None:
        """The partition was appended to (by `produce`, or by the broker itself: commits, dead
        letters): the next flush must cover it."""
        if self._fs is not None and self.options.fsync.mode != "never":
            self._dirty[topic, partition] = self.log(topic, partition)

    def take_dirty(self) -> list[tuple[TopicPartition, PartitionLog]]:
        """The partitions appended to since the last call, with their logs: what a flush must
        cover (see `storage.log.PartitionLog.prepare_flush`)."""
        dirty = list(self._dirty.items())
        self._dirty.clear()
        return dirty

    def flushed_offset(self, topic: str, partition: int) -> int:
        """Everything below this offset of the partition is durable."""
        return self.log(topic, partition).flushed_offset

    def read_only_reason(self, topic: str, partition: int) -> str | None:
        """Why the partition takes no more writes (a failed fsync), or None."""
        return self.log(topic, partition).read_only_reason

    # -- housekeeping --------------------------------------------------------------------------

    def apply_retention(self, now_ms: int) -> int:
        """Roll segments past `segment.ms` and delete what retention allows; segments deleted."""
        deleted = 0
        for _, _, log in self.logs():
            try:
                log.roll_if_due(now_ms)
                deleted += log.apply_retention(now_ms)
            except StorageError as exc:
                self.notes.append(str(exc))
        return deleted

    def snapshot_producer_state(self, now_ms: int) -> int:
        """Forget idle producers and snapshot the producer state of every partition that changed.

        Run periodically (the server's housekeeping) so that after a crash only the batches
        appended since are walked to rebuild the state. Returns the number of snapshots written;
        failures are kept in `notes` and tried again at the next call.
        """
        written = 0
        for name, topic in self._topics.items():
            for partition, log in enumerate(topic.logs):
                producers = topic.producers[partition]
                producers.expire(now_ms)
                try:
                    written += self._snapshot(name, partition, log, producers)
                except StorageError as exc:
                    self.notes.append(str(exc))
        return written

    def _snapshot(self, name: str, partition: int, log: PartitionLog, producers: ProducerStateTable) -> int:
        end = log.next_offset
        if (
            self._fs is None
            or log.read_only_reason is not None
            or not producers.needs_snapshot(end)
            or (producers.snapshot_offset is None and not producers.producers and end == log.log_start_offset)
        ):
            return 0
        save_producer_state(self._fs, self._partition_dir(name, partition), producers, end)
        return 1

    def close(self) -> None:
        """Snapshot the producer state, flush and close every log, marking clean shutdowns;
        raises the first failure."""
        failure: StorageError | None = None
        for name, topic in self._topics.items():
            for partition, log in enumerate(topic.logs):
                try:
                    self._snapshot(name, partition, log, topic.producers[partition])
                except StorageError as exc:
                    failure = failure or exc
                try:
                    log.close()
                except StorageError as exc:
                    failure = failure or exc
        self._topics.clear()
        if self._lock is not None:
            self._lock.release()
        if failure is not None:
            raise failure

    # -- internals -----------------------------------------------------------------------------

    def _topics_changed(self, name: str) -> None:
        self.topics_version += 1
        for listener in self.topic_listeners:
            listener(name)

    def _topic(self, name: str) -> _Topic:
        topic = self._topics.get(name)
        if topic is not None:
            return topic
        check_topic_name(name, internal_ok=True)
        raise UnknownTopicOrPartitionError(f"unknown topic {name!r}")

    def _log(self, topic: _Topic, partition: int) -> PartitionLog:
        if not 0 <= partition < len(topic.logs):
            raise UnknownTopicOrPartitionError(
                f"topic {topic.entry.name!r} has partitions 0 to {len(topic.logs) - 1}, not {partition}"
            )
        return topic.logs[partition]

    def _partition_dir(self, topic: str, partition: int) -> str:
        assert self.data_dir is not None
        return os.path.join(self.data_dir, f"{topic}-{partition}")

    def _open_topic(self, entry: TopicEntry, now_ms: int) -> _Topic:
        config = self.options.topic_defaults.with_overrides(entry.config)
        log_config = config.log_config()
        logs: list[PartitionLog] = []
        producers: list[ProducerStateTable] = []
        try:
            for partition in range(entry.partitions):
                name = f"topic {entry.name!r} partition {partition}"
                if self._fs is None:
                    logs.append(PartitionLog.in_memory(log_config, now_ms=now_ms))
                    producers.append(ProducerStateTable(name))
                    continue
                directory = self._partition_dir(entry.name, partition)
                log = PartitionLog.open(self._fs, directory, log_config, now_ms=now_ms)
                logs.append(log)
                table, notes = load_producer_state(self._fs, directory, log, name, now_ms)
                producers.append(table)
                if log.recovery is not None:
                    log.recovery.notes.extend(notes)
                    self.recovery.append(log.recovery)
        except BaseException:
            for log in logs:
                log.close()
            raise
        return _Topic(entry, config, logs, producers)

    def _finish_deletes(self) -> None:
        """Deletes a full disk made wait: `<partition dir>.deleted` stands for its topic's delete."""
        if self._fs is None or self.data_dir is None:
            return
        for name in sorted(self._fs.list_dir(self.data_dir)):
            if not name.endswith(DELETED_SUFFIX):
                continue
            path = os.path.join(self.data_dir, name)
            empty_dir(self._fs, path)  # the space first: saving the catalogue may need it
            match = _PARTITION_DIR.fullmatch(name[: -len(DELETED_SUFFIX)])
            if match is not None and match["topic"] in {entry.name for entry in self._store}:
                self._store.remove(match["topic"])
                self.notes.append(f"finished deleting topic {match['topic']!r}")
            remove_tree(self._fs, path)

    def _remove_leftovers(self) -> None:
        """Partition directories of topics the catalogue no longer has: a delete a crash cut short."""
        if self._fs is None or self.data_dir is None:
            return
        for name in sorted(self._fs.list_dir(self.data_dir)):
            path = os.path.join(self.data_dir, name)
            if name in (CATALOGUE_FILE + ".tmp", PRODUCER_ID_FILE + ".tmp"):
                self._fs.unlink(path)
                self.notes.append(f"removed leftover {path}")
                continue
            match = _PARTITION_DIR.fullmatch(name)
            if match is None or not self._fs.is_dir(path):
                continue
            topic = self._topics.get(match["topic"])
            if topic is None or int(match["partition"]) >= len(topic.logs):
                remove_tree(self._fs, path)
                self.notes.append(f"removed {path}: its topic was deleted")

    def _info(self, topic: _Topic, *, details: bool) -> TopicInfo:
        entry = topic.entry
        partitions = []
        if details:
            for partition, log in enumerate(topic.logs):
                damage = log.damage
                partitions.append(
                    PartitionInfo(
                        partition,
                        log.log_start_offset,
                        self.high_watermark(log),
                        log.next_offset,
                        log.size_bytes,
                        len(log.segments),
                        str(damage) if damage is not None else None,
                        log.read_only_reason,
                    )
                )
        return TopicInfo(
            entry.name,
            entry.partitions,
            topic.config.to_kafka(),
            is_internal(entry.name),
            entry.created_ms,
            partitions,
        )


def check_batches(
    data: Buffer, config: TopicConfig, now_ms: int, topic: str, headers: list[BatchHeader] | None = None
) -> list[BatchHeader]:
    """Validate produced batches against the record format (unless their validated `headers`
    are given) and the topic's rules."""
    if headers is None:
        headers = validate_batches(data)
    for header in headers:
        if header.size > config.max_message_bytes:
            raise MessageTooLargeError(
                f"a batch of {header.size} bytes is larger than max.message.bytes "
                f"({config.max_message_bytes}) of topic {topic!r}"
            )
        if header.base_offset != 0:
            raise InvalidRecordError(f"produced batches carry base offset 0, not {header.base_offset}")
        if header.is_control:
            raise InvalidRecordError("control batches are written by the broker only")
        if header.is_transactional:
            raise InvalidRecordError("transactional batches are not served (transactions are not supported)")
        if header.producer_id >= 0 and header.base_sequence < 0:
            raise InvalidRecordError("a batch with a producer id needs a base sequence")
        if header.log_append_time:
            raise InvalidTimestampError("producers send CreateTime batches; the broker sets LogAppendTime")
        after, before = config.timestamp_after_max_ms, config.timestamp_before_max_ms
        if after >= 0 and header.max_timestamp > now_ms + after:
            raise InvalidTimestampError(
                f"timestamp {header.max_timestamp} is more than message.timestamp.after.max.ms ({after}) "
                f"ahead of the broker's clock ({now_ms})"
            )
        if before >= 0 and 0 <= header.base_timestamp < now_ms - before:
            raise InvalidTimestampError(
                f"timestamp {header.base_timestamp} is more than message.timestamp.before.max.ms ({before}) "
                f"behind the broker's clock ({now_ms})"
            )
    return headers


def _size(n: int) -> str:
    """Bytes as a person reads them: 67108864 is "64 MiB"."""
    for unit, shift in (("EiB", 60), ("PiB", 50), ("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift:
            return f"{n / (1 << shift):.1f}".removesuffix(".0") + f" {unit}"
    return f"{n} bytes"
