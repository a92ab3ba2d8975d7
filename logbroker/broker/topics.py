"""The topic catalogue: which topics exist, with how many partitions and which settings.

File brokers keep it in `<data dir>/topics.json`, replaced atomically (temp file, fsync, rename,
fsync directory) on every change, so after a crash it is the old catalogue or the new one:

    {"version": 1, "topics": {"orders": {"partitions": 3, "config": {"retention.ms": "3600000"},
                                          "created_ms": 1767225600000}}}

`config` holds only the settings given when the topic was created; the broker's defaults fill in
the rest when the topic is opened. Partition directories are `<data dir>/<topic>-<partition>`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import attrs

from logbroker.errors import StorageError
from logbroker.storage.fs import FileSystem, write_atomic

__all__ = ["CATALOGUE_FILE", "TopicEntry", "TopicStore"]

CATALOGUE_FILE = "topics.json"
_VERSION = 1


@attrs.frozen
class TopicEntry:
    name: str
    partitions: int
    config: dict[str, str]
    created_ms: int


class TopicStore:
    """The catalogue, in memory, mirrored to `topics.json` when a file system is given."""

    def __init__(self, fs: FileSystem | None, data_dir: str | None) -> None:
        self._fs = fs
        self._data_dir = data_dir
        self._topics: dict[str, TopicEntry] = {}
        if fs is not None and data_dir is not None:
            self._load()

    @property
    def path(self) -> str | None:
        return os.path.join(self._data_dir, CATALOGUE_FILE) if self._data_dir is not None else None

    def __iter__(self) -> Iterator[TopicEntry]:
        return iter(sorted(self._topics.values(), key=lambda t: t.name))

    def __contains__(self, name: object) -> bool:
        return name in self._topics

    def get(self, name: str) -> TopicEntry | None:
        return self._topics.get(name)

    def add(self, entry: TopicEntry) -> None:
        topics = dict(self._topics)
        topics[entry.name] = entry
        self._save(topics)
        self._topics = topics

    def remove(self, name: str) -> None:
        topics = dict(self._topics)
        del topics[name]
        self._save(topics)
        self._topics = topics

    def _load(self) -> None:
        if self._fs is None or self.path is None:
            return
        if not self._fs.exists(self.path):
            return
        try:
            raw = json.loads(self._fs.read_file(self.path))
            if raw.get("version") != _VERSION:
                raise ValueError(f"unknown catalogue version {raw.get('version')!r}")
            for name, entry in raw["topics"].items():
                self._topics[name] = TopicEntry(
                    name,
                    int(entry["partitions"]),
                    {str(k): str(v) for k, v in entry.get("config", {}).items()},
                    int(entry.get("created_ms", 0)),
                )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise StorageError(
                f"{self.path}: the topic catalogue is unreadable ({exc}); restore it from a backup "
                "or move it aside (the partition directories are left untouched)"
            ) from None

    def _save(self, topics: dict[str, TopicEntry]) -> None:
        if self._fs is None or self.path is None:
            return
        document = {
            "version": _VERSION,
            "topics": {
                t.name: {"partitions": t.partitions, "config": t.config, "created_ms": t.created_ms}
                for t in sorted(topics.values(), key=lambda t: t.name)
            },
        }
        try:
            write_atomic(self._fs, self.path, json.dumps(document, indent=1).encode())
        except OSError as exc:
            raise StorageError(
                f"{self.path}: cannot save the topic catalogue: {exc.strerror or exc}"
            ) from exc
