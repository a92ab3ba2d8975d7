"""The credential store: SCRAM credentials of every user, in `<data-dir>/security/users.json`.

    {"version": 1,
     "users": {"alice": {"SCRAM-SHA-256": {"mechanism": "SCRAM-SHA-256", "salt": "<base64>",
                                           "iterations": 8192, "stored_key": "<base64>",
                                           "server_key": "<base64>"},
                         "SCRAM-SHA-512": {...}}}}

Only salts, iteration counts and the derived StoredKey/ServerKey are kept (see `scram`), never a
password. The file is replaced atomically (write `users.json.tmp`, fsync, rename, fsync the
directory), so a reader sees the old file or the new one, never half of one; it is mode 0600 in a
0700 directory. Writers (`logbroker users ...`) take an flock on `users.lock` around
read-modify-write so two of them cannot lose each other's change. The broker only reads: it calls
`reload_if_changed()` before each login, so a user added on the command line can log in to a
running broker at once.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
from collections.abc import Iterator
from typing import Any

from logbroker.errors import InvalidConfigError

from .files import write_private
from .scram import DEFAULT_ITERATIONS, MECHANISMS, ScramCredential, check_username, make_credential

__all__ = ["FILE_NAME", "UserStore", "open_store", "security_dir"]

FILE_NAME = "users.json"
_VERSION = 1
#: A users file larger than this is refused rather than read (about 10,000 users).
_MAX_FILE_BYTES = 16 * 1024 * 1024

logger = logging.getLogger("logbroker.security")

# Which file the in-memory copy came from: (st_mtime_ns, st_size, st_ino), None when absent.
_Stamp = tuple[int, int, int] | None


def security_dir(data_dir: str) -> str:
    """Where a broker keeps its security files, under its data directory."""
    return os.path.join(data_dir, "security")


def _stamp(stat: os.stat_result) -> tuple[int, int, int]:
    return (stat.st_mtime_ns, stat.st_size, stat.st_ino)


class UserStore:
    """The users of one broker. Reads come from an in-memory copy; `load` or `reload_if_changed`
    refresh it; `add` and `delete` re-read the file, change it and write it back."""

    def __init__(self, directory: str) -> None:
        self._directory = directory
        self._users: dict[str, dict[str, ScramCredential]] = {}
        self._stamp: _Stamp = None

    @property
    def path(self) -> str:
        return os.path.join(self._directory, FILE_NAME)

    def credential(self, username: str, mechanism: str) -> ScramCredential | None:
        return self._users.get(username, {}).get(mechanism)

    def usernames(self) -> list[str]:
        return sorted(self._users)

    def mechanisms(self, username: str) -> list[str]:
        return sorted(self._users.get(username, {}))

    def load(self) -> None:
        """Read the file (a missing one means no users); `InvalidConfigError` if it is corrupt."""
        self._users, self._stamp = self._read()

    def reload_if_changed(self) -> bool:
        """Re-read the file if it changed since the last read; True if the users were replaced.

        A corrupt file is logged and the previous users kept: a broker should go on admitting the
        users it knew rather than lock everyone out because of a bad edit."""
        try:
            current: _Stamp = _stamp(os.stat(self.path))
        except FileNotFoundError:
            current = None
        if current == self._stamp:
            return False
        try:
            self.load()
        except InvalidConfigError as exc:
            logger.warning("%s; keeping the %d user(s) read before", exc.message, len(self._users))
            self._stamp = current  # warn once per change, not on every login
            return False
        return True

    def add(self, username: str, password: str, iterations: int = DEFAULT_ITERATIONS) -> bool:
        """Create or replace `username`'s credentials for every mechanism; True if the user is new.

        `ValueError` for an invalid name, an empty password or a bad iteration count."""
        check_username(username)
        if not password:
            raise ValueError("the password must not be empty")
        credentials = {
            mechanism: make_credential(password, mechanism, iterations) for mechanism in MECHANISMS
        }
        with self._locked():
            self.load()
            new = username not in self._users
            users = dict(self._users)
            users[username] = credentials
            self._write(users)
        return new

    def delete(self, username: str) -> bool:
        """Remove `username`; False if there was no such user."""
        with self._locked():
            self.load()
            if username not in self._users:
                return False
            users = {name: creds for name, creds in self._users.items() if name != username}
            self._write(users)
        return True

    def decoy_key(self) -> bytes:
        """The secret the SCRAM salts of unknown users derive from (`ScramServer`), kept in
        `decoy.key` so they stay the same across restarts, as real users' salts do: otherwise
        comparing salts before and after a restart would tell which users exist."""
        path = os.path.join(self._directory, "decoy.key")
        with self._locked():
            try:
                with open(path, "rb") as file:
                    key = file.read()
                if len(key) == 32:
                    return key
                logger.warning("%s: not a 32-byte key; making a new one (unknown users' salts change)", path)
            except FileNotFoundError:
                pass
            key = os.urandom(32)
            write_private(self._directory, path, key)
            return key

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self._make_directory()
        with open(os.path.join(self._directory, "users.lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _make_directory(self) -> None:
        # Intermediate directories get the default mode; the security directory itself is private.
        os.makedirs(self._directory, mode=0o700, exist_ok=True)

    def _read(self) -> tuple[dict[str, dict[str, ScramCredential]], _Stamp]:
        path = self.path
        try:
            with open(path, "rb") as file:
                # The stamp of the file actually read, so a rename in between is noticed next time.
                stamp = _stamp(os.fstat(file.fileno()))
                data = file.read(_MAX_FILE_BYTES + 1)
        except FileNotFoundError:
            return {}, None
        if len(data) > _MAX_FILE_BYTES:
            raise InvalidConfigError(f"{path}: larger than {_MAX_FILE_BYTES} bytes")
        try:
            return _parse(json.loads(data)), stamp
        except (ValueError, UnicodeDecodeError) as exc:  # json.JSONDecodeError is a ValueError
            raise InvalidConfigError(f"{path}: not a valid users file: {exc}") from None

    def _write(self, users: dict[str, dict[str, ScramCredential]]) -> None:
        document = {
            "version": _VERSION,
            "users": {
                name: {mechanism: cred.to_json() for mechanism, cred in sorted(creds.items())}
                for name, creds in sorted(users.items())
            },
        }
        data = (json.dumps(document, indent=2) + "\n").encode("utf-8")
        write_private(self._directory, self.path, data)
        self._users = users
        self._stamp = _stamp(os.stat(self.path))


def _parse(document: Any) -> dict[str, dict[str, ScramCredential]]:
    """The users of a decoded file; `ValueError` naming the first thing wrong."""
    if not isinstance(document, dict):
        raise ValueError("the top level must be an object")
    if document.get("version") != _VERSION:
        raise ValueError(f"unsupported version {document.get('version')!r} (expected {_VERSION})")
    entries = document.get("users")
    if not isinstance(entries, dict):
        raise ValueError("'users' must be an object")
    users: dict[str, dict[str, ScramCredential]] = {}
    for name, mechanisms in entries.items():
        check_username(name)
        if not isinstance(mechanisms, dict):
            raise ValueError(f"user {name!r}: expected an object of mechanisms")
        credentials: dict[str, ScramCredential] = {}
        for mechanism, data in mechanisms.items():
            try:
                credential = ScramCredential.from_json(data)
            except ValueError as exc:
                raise ValueError(f"user {name!r}, {mechanism}: {exc}") from None
            if credential.mechanism != mechanism:
                raise ValueError(f"user {name!r}: a {credential.mechanism} credential under {mechanism}")
            credentials[mechanism] = credential
        users[name] = credentials
    return users


def open_store(directory: str) -> UserStore:
    """A store with the users of `directory` loaded (`InvalidConfigError` if the file is corrupt)."""
    store = UserStore(directory)
    store.load()
    return store
