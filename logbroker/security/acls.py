"""Kafka-style ACLs: which principal may do which operation on which resource (sans-IO, no trio).

A rule says `allow|deny <principal> <operation> <resource type> <name> (literal|prefix)`. The
semantics are Kafka's (`AclAuthorizer`/`StandardAuthorizer`):

- nothing matching means denied, and a matching deny beats any number of matching allows;
- principal `User:*` matches every principal; operation `all` matches every operation;
- a literal name `*` matches every resource of its type; a prefix name matches every name that
  starts with it, the prefix itself included (Kafka's PREFIXED: prefix `orders` matches `orders`,
  `orders.eu` and `ordersx`, so end a prefix with its separator, `orders.`, to mean a namespace);
- an *allow* of read, write, delete or alter also allows describe (a client that may read a topic
  must be able to look it up); a *deny* of those does not deny describe, and create implies nothing.

`Authorizer` answers questions against a fixed set of rules and caches the answers; the broker
builds a new one whenever the rules change. `AclStore` keeps the rules in `<dir>/acls.json`:

    {"version": 1, "rules": [{"principal": "User:alice", "operation": "read",
                              "resource_type": "topic", "name": "orders.",
                              "pattern": "prefix", "permission": "allow"}, ...]}

written atomically (temporary file, fsync, rename, fsync of the directory) with mode 0600, so a
reader sees the old rules or the new ones, never half a file.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable
from typing import Any

import attrs

from logbroker.errors import InvalidConfigError
from logbroker.security.files import write_private

__all__ = [
    "ALL",
    "CLUSTER",
    "OPERATIONS",
    "PATTERNS",
    "PERMISSIONS",
    "RESOURCE_TYPES",
    "AclRule",
    "AclStore",
    "Authorizer",
]

log = logging.getLogger("logbroker.security")

OPERATIONS = ("read", "write", "create", "delete", "describe", "alter")
#: The wildcard operation: a rule with it matches every operation.
ALL = "all"
RESOURCE_TYPES = ("topic", "group", "cluster")
PATTERNS = ("literal", "prefix")
PERMISSIONS = ("allow", "deny")
#: The name of the one cluster resource (Kafka's).
CLUSTER = "kafka-cluster"
#: A literal rule name that matches every resource of the type.
WILDCARD = "*"
#: The principal that matches every principal.
ANY_PRINCIPAL = "User:*"

#: An allow of one of these also allows describe (Kafka's implied operations).
_IMPLIES_DESCRIBE = frozenset({"read", "write", "delete", "alter"})
_RULE_FIELDS = ("principal", "operation", "resource_type", "name", "pattern", "permission")

#: Cached decisions an `Authorizer` keeps before it starts over; bounds memory when names churn.
CACHE_LIMIT = 10_000
#: The largest acls.json `AclStore` will read: a bigger one is a mistake, not a rule set.
MAX_FILE_BYTES = 16 * 1024 * 1024
FORMAT_VERSION = 1
FILE_NAME = "acls.json"


def _printable(text: str) -> bool:
    # One rule is one line of `acls list`; control characters would break that (or hide text).
    return text.isprintable()


@attrs.frozen
class AclRule:
    principal: str
    operation: str
    resource_type: str
    name: str
    pattern: str = "literal"
    permission: str = "allow"

    def check(self) -> None:
        """Raise ValueError saying what is wrong with the rule (nothing, for a valid one)."""
        kind, sep, who = self.principal.partition(":")
        if kind != "User" or not sep or not who or not _printable(who) or who != who.strip():
            raise ValueError(f"principal {self.principal!r}: expected User:<name> or User:*")
        if self.operation not in (*OPERATIONS, ALL):
            raise ValueError(f"operation {self.operation!r}: expected one of {', '.join((*OPERATIONS, ALL))}")
        if self.resource_type not in RESOURCE_TYPES:
            raise ValueError(
                f"resource type {self.resource_type!r}: expected one of {', '.join(RESOURCE_TYPES)}"
            )
        if self.pattern not in PATTERNS:
            raise ValueError(f"pattern {self.pattern!r}: expected one of {', '.join(PATTERNS)}")
        if self.permission not in PERMISSIONS:
            raise ValueError(f"permission {self.permission!r}: expected one of {', '.join(PERMISSIONS)}")
        if not self.name:
            raise ValueError("resource name must not be empty")
        if not _printable(self.name):
            raise ValueError(f"resource name {self.name!r}: control characters are not allowed")
        if self.resource_type == "cluster":
            if self.name != CLUSTER or self.pattern != "literal":
                raise ValueError(f"the cluster resource is always the literal name {CLUSTER!r}")
        elif self.pattern == "prefix" and self.name == WILDCARD:
            # Kafka refuses it too: it would read as "names starting with *", not "every name".
            raise ValueError("a prefix pattern cannot be '*': use a literal '*' for every resource")

    def matches(self, principal: str, operation: str, resource_type: str, name: str) -> bool:
        """Whether this rule speaks about the request (whatever its permission).

        An allow of read/write/delete/alter also matches a describe request; a deny of them does
        not, so that denying a write does not hide the topic from a principal that may read it.
        """
        if self.resource_type != resource_type:
            return False
        if self.principal != principal and self.principal != ANY_PRINCIPAL:
            return False
        if self.operation != operation and self.operation != ALL:
            implied = (
                operation == "describe" and self.permission == "allow" and self.operation in _IMPLIES_DESCRIBE
            )
            if not implied:
                return False
        return self._matches_name(name)

    def _matches_name(self, name: str) -> bool:
        if self.pattern == "prefix":
            return name.startswith(self.name)
        return self.name == name or self.name == WILDCARD

    def to_json(self) -> dict[str, str]:
        return {field: getattr(self, field) for field in _RULE_FIELDS}

    @classmethod
    def from_json(cls, obj: object) -> AclRule:
        """The rule an object from `to_json` describes; ValueError if it is not a valid one."""
        if not isinstance(obj, dict):
            raise ValueError(f"a rule must be an object, not {type(obj).__name__}")
        unknown = sorted(set(obj) - set(_RULE_FIELDS))
        if unknown:
            raise ValueError(f"unknown rule field(s): {', '.join(map(str, unknown))}")
        values: dict[str, str] = {}
        for field in _RULE_FIELDS:
            if field not in obj:
                if field in ("pattern", "permission"):
                    continue
                raise ValueError(f"rule lacks {field!r}")
            value = obj[field]
            if not isinstance(value, str):
                raise ValueError(f"rule field {field!r} must be a string, not {type(value).__name__}")
            values[field] = value
        rule = cls(**values)
        rule.check()
        return rule

    def __str__(self) -> str:
        return f"{self.permission} {self.principal} {self.operation} {self.resource_type} {self.name} ({self.pattern})"


class Authorizer:
    """Decisions against a fixed set of rules; build a new one when the rules change.

    It runs for every partition of every produce and fetch, so rules are indexed by resource type
    and decisions are cached (the cache is dropped whole past `CACHE_LIMIT` entries: simpler than
    an LRU and, since rules are few and names repeat, almost always warm).
    """

    def __init__(self, rules: Iterable[AclRule], super_users: Iterable[str] = ()) -> None:
        by_type: dict[str, list[AclRule]] = {kind: [] for kind in RESOURCE_TYPES}
        for rule in rules:
            rule.check()
            by_type[rule.resource_type].append(rule)
        # Denies first: one matching deny settles a request without looking at the allows.
        self._rules = {
            kind: (
                tuple(r for r in found if r.permission == "deny"),
                tuple(r for r in found if r.permission == "allow"),
            )
            for kind, found in by_type.items()
        }
        self._super_users = frozenset(super_users)
        self._cache: dict[tuple[str, str, str, str], bool] = {}

    def allowed(self, principal: str, operation: str, resource_type: str, name: str) -> bool:
        """Whether `principal` may do `operation` on the named resource (super users always may)."""
        key = (principal, operation, resource_type, name)
        decision = self._cache.get(key)
        if decision is None:
            decision = self._decide(principal, operation, resource_type, name)
            if len(self._cache) >= CACHE_LIMIT:
                self._cache.clear()
            self._cache[key] = decision
        return decision

    def _decide(self, principal: str, operation: str, resource_type: str, name: str) -> bool:
        # Checked before the super users so that a typo in the broker fails in every test, not only
        # in those that happen to use an ordinary principal (to whom it would read as "denied").
        if operation not in OPERATIONS:
            raise ValueError(f"cannot authorize operation {operation!r}")
        if resource_type not in self._rules:
            raise ValueError(f"cannot authorize resource type {resource_type!r}")
        if principal in self._super_users:
            return True
        denies, allows = self._rules[resource_type]
        if any(rule.matches(principal, operation, resource_type, name) for rule in denies):
            return False
        return any(rule.matches(principal, operation, resource_type, name) for rule in allows)

    def allowed_any(self, principal: str, operation: str, resource_type: str) -> bool:
        """Whether some rule could allow `operation` on at least one resource of the type.

        A hint (e.g. to tell a principal it has no rights at all), not a decision: it ignores
        denies except a literal `*` one, which rules out every resource of the type.
        """
        if principal in self._super_users:
            return True
        denies, allows = self._rules.get(resource_type, ((), ()))

        def speaks_to(rule: AclRule) -> bool:
            return rule.matches(principal, operation, resource_type, rule.name)

        if any(speaks_to(r) and r.pattern == "literal" and r.name == WILDCARD for r in denies):
            return False
        return any(speaks_to(r) for r in allows)


class AclStore:
    """The rules in `<directory>/acls.json`, read lazily and written atomically.

    Changes re-read the file first, so two processes editing rules one after the other (the CLI
    while a broker runs) do not undo each other; truly concurrent edits are not serialized.
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = os.fspath(directory)
        self.path = os.path.join(self.directory, FILE_NAME)
        self._rules: list[AclRule] = []
        self._loaded = False
        #: (mtime_ns, size, inode) of the file the rules came from; None when there was no file.
        self._signature: tuple[int, int, int] | None = None

    def load(self) -> None:
        """Read the rules (a missing file is no rules); InvalidConfigError if the file is corrupt."""
        self._rules, self._signature = self._read()
        self._loaded = True

    def reload_if_changed(self) -> bool:
        """Re-read the file if it changed since it was read; whether the rules were re-read.

        A corrupt file is logged and the rules stay as they were: a running broker should not
        lose every grant (or every deny) because someone saved a typo.
        """
        if self._loaded and self._current_signature() == self._signature:
            return False
        try:
            self.load()
        except InvalidConfigError as exc:
            log.warning("keeping the previous ACLs: %s", exc.message)
            return False
        return True

    def rules(self) -> list[AclRule]:
        self._ensure_loaded()
        return list(self._rules)

    def add(self, rule: AclRule) -> bool:
        """Add and save `rule`; False (and nothing written) if it is already there."""
        rule.check()
        self._refresh_for_change()
        if rule in self._rules:
            return False
        self._write([*self._rules, rule])
        return True

    def delete(self, matching: Callable[[AclRule], bool]) -> list[AclRule]:
        """Remove and save every rule `matching` picks; the rules removed."""
        self._refresh_for_change()
        removed = [rule for rule in self._rules if matching(rule)]
        if removed:
            self._write([rule for rule in self._rules if not matching(rule)])
        return removed

    def authorizer(self, super_users: Iterable[str] = ()) -> Authorizer:
        self._ensure_loaded()
        return Authorizer(self._rules, super_users)

    def _ensure_loaded(self) -> None:
        if not self._loaded:
            self.load()

    def _refresh_for_change(self) -> None:
        # Strict, unlike reload_if_changed: saving over a corrupt file would throw its rules away.
        if not self._loaded or self._current_signature() != self._signature:
            self.load()

    def _current_signature(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def _read(self) -> tuple[list[AclRule], tuple[int, int, int] | None]:
        try:
            with open(self.path, "rb") as file:
                st = os.fstat(file.fileno())
                if st.st_size > MAX_FILE_BYTES:
                    raise InvalidConfigError(f"{self.path}: larger than {MAX_FILE_BYTES} bytes")
                data = file.read(MAX_FILE_BYTES + 1)
        except FileNotFoundError:
            return [], None
        if len(data) > MAX_FILE_BYTES:
            raise InvalidConfigError(f"{self.path}: larger than {MAX_FILE_BYTES} bytes")
        try:
            rules = _parse(json.loads(data))
        except (ValueError, TypeError) as exc:  # json.JSONDecodeError and UnicodeDecodeError too
            raise InvalidConfigError(f"{self.path}: not a valid ACL file: {exc}") from None
        return rules, (st.st_mtime_ns, st.st_size, st.st_ino)

    def _write(self, rules: list[AclRule]) -> None:
        document = {"version": FORMAT_VERSION, "rules": [rule.to_json() for rule in rules]}
        data = (json.dumps(document, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
        write_private(self.directory, self.path, data)
        self._rules = list(rules)
        self._signature = self._current_signature()
        self._loaded = True


def _parse(document: Any) -> list[AclRule]:
    if not isinstance(document, dict):
        raise ValueError("expected a JSON object")
    if document.get("version") != FORMAT_VERSION:
        raise ValueError(f"unsupported version {document.get('version')!r} (expected {FORMAT_VERSION})")
    found = document.get("rules")
    if not isinstance(found, list):
        raise ValueError("'rules' must be a list")
    rules = []
    for index, obj in enumerate(found):
        try:
            rules.append(AclRule.from_json(obj))
        except ValueError as exc:
            raise ValueError(f"rule {index}: {exc}") from None
    return rules
