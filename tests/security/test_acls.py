"""ACL rules, the authorizer's decisions (Kafka's semantics), the rule file and `logbroker acls`."""

from __future__ import annotations

import json
import logging
import os
import re
import stat
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from logbroker.cli.acls import acls
from logbroker.errors import InvalidConfigError
from logbroker.security.acls import CLUSTER, AclRule, AclStore, Authorizer


def allow(principal: str, operation: str, kind: str, name: str, pattern: str = "literal") -> AclRule:
    return AclRule(principal, operation, kind, name, pattern, "allow")


def deny(principal: str, operation: str, kind: str, name: str, pattern: str = "literal") -> AclRule:
    return AclRule(principal, operation, kind, name, pattern, "deny")


ALICE = "User:alice"
BOB = "User:bob"

# (case, rules, (principal, operation, resource type, name), expected)
DECISIONS = [
    ("no rules: denied", [], (ALICE, "read", "topic", "orders"), False),
    ("literal allow", [allow(ALICE, "read", "topic", "orders")], (ALICE, "read", "topic", "orders"), True),
    (
        "literal is exact",
        [allow(ALICE, "read", "topic", "orders")],
        (ALICE, "read", "topic", "orders.eu"),
        False,
    ),
    (
        "prefix matches longer names",
        [allow(ALICE, "read", "topic", "orders.", "prefix")],
        (ALICE, "read", "topic", "orders.eu"),
        True,
    ),
    (
        "prefix with separator does not match the bare name",
        [allow(ALICE, "read", "topic", "orders.", "prefix")],
        (ALICE, "read", "topic", "orders"),
        False,
    ),
    (
        "prefix matches the exact name (Kafka's PREFIXED)",
        [allow(ALICE, "read", "topic", "orders", "prefix")],
        (ALICE, "read", "topic", "orders"),
        True,
    ),
    (
        "prefix is a plain string prefix",
        [allow(ALICE, "read", "topic", "orders", "prefix")],
        (ALICE, "read", "topic", "ordersx"),
        True,
    ),
    (
        "prefix does not match other names",
        [allow(ALICE, "read", "topic", "orders", "prefix")],
        (ALICE, "read", "topic", "payments"),
        False,
    ),
    (
        "literal * is every name",
        [allow(ALICE, "read", "topic", "*")],
        (ALICE, "read", "topic", "anything"),
        True,
    ),
    (
        "User:* is everyone",
        [allow("User:*", "read", "topic", "orders")],
        (BOB, "read", "topic", "orders"),
        True,
    ),
    ("operation all", [allow(ALICE, "all", "topic", "orders")], (ALICE, "delete", "topic", "orders"), True),
    (
        "other operation",
        [allow(ALICE, "read", "topic", "orders")],
        (ALICE, "write", "topic", "orders"),
        False,
    ),
    ("read implies describe", [allow(ALICE, "read", "topic", "t")], (ALICE, "describe", "topic", "t"), True),
    (
        "write implies describe",
        [allow(ALICE, "write", "topic", "t")],
        (ALICE, "describe", "topic", "t"),
        True,
    ),
    (
        "delete implies describe",
        [allow(ALICE, "delete", "topic", "t")],
        (ALICE, "describe", "topic", "t"),
        True,
    ),
    (
        "alter implies describe",
        [allow(ALICE, "alter", "topic", "t")],
        (ALICE, "describe", "topic", "t"),
        True,
    ),
    (
        "create does not imply describe",
        [allow(ALICE, "create", "topic", "t")],
        (ALICE, "describe", "topic", "t"),
        False,
    ),
    (
        "describe does not imply read",
        [allow(ALICE, "describe", "topic", "t")],
        (ALICE, "read", "topic", "t"),
        False,
    ),
    (
        "implied describe follows the name",
        [allow(ALICE, "read", "topic", "t")],
        (ALICE, "describe", "topic", "u"),
        False,
    ),
    (
        "a deny of read does not deny describe",
        [allow(ALICE, "describe", "topic", "t"), deny(ALICE, "read", "topic", "t")],
        (ALICE, "describe", "topic", "t"),
        True,
    ),
    (
        "deny beats allow",
        [allow(ALICE, "read", "topic", "t"), deny(ALICE, "read", "topic", "t")],
        (ALICE, "read", "topic", "t"),
        False,
    ),
    (
        "prefix deny beats literal allow",
        [allow(ALICE, "read", "topic", "secret.x"), deny(ALICE, "read", "topic", "secret.", "prefix")],
        (ALICE, "read", "topic", "secret.x"),
        False,
    ),
    (
        "User:* deny beats a named allow",
        [allow(ALICE, "write", "topic", "t"), deny("User:*", "write", "topic", "t")],
        (ALICE, "write", "topic", "t"),
        False,
    ),
    (
        "deny all beats allow",
        [allow(ALICE, "write", "topic", "t"), deny(ALICE, "all", "topic", "*")],
        (ALICE, "write", "topic", "t"),
        False,
    ),
    (
        "deny of another name leaves the allow",
        [allow(ALICE, "read", "topic", "*"), deny(ALICE, "read", "topic", "secret")],
        (ALICE, "read", "topic", "public"),
        True,
    ),
    ("principal mismatch", [allow(ALICE, "read", "topic", "t")], (BOB, "read", "topic", "t"), False),
    (
        "principal is exact",
        [allow(ALICE, "read", "topic", "t")],
        ("User:alice2", "read", "topic", "t"),
        False,
    ),
    ("resource type mismatch", [allow(ALICE, "read", "topic", "t")], (ALICE, "read", "group", "t"), False),
    ("group literal", [allow(ALICE, "read", "group", "g1")], (ALICE, "read", "group", "g1"), True),
    ("cluster", [allow(ALICE, "create", "cluster", CLUSTER)], (ALICE, "create", "cluster", CLUSTER), True),
]


@pytest.mark.parametrize(
    ("rules", "request_", "expected"),
    [pytest.param(rules, request_, expected, id=case) for case, rules, request_, expected in DECISIONS],
)
def test_allowed(rules: list[AclRule], request_: tuple[str, str, str, str], expected: bool) -> None:
    authorizer = Authorizer(rules)
    assert authorizer.allowed(*request_) is expected
    assert authorizer.allowed(*request_) is expected  # the cached answer


def test_super_users_are_always_allowed() -> None:
    authorizer = Authorizer([deny(ALICE, "all", "topic", "*")], super_users=[ALICE, "User:admin"])
    assert authorizer.allowed(ALICE, "write", "topic", "t")
    assert authorizer.allowed("User:admin", "alter", "cluster", CLUSTER)
    assert not authorizer.allowed(BOB, "read", "topic", "t")


def test_unknown_operation_or_resource_type_is_an_error() -> None:
    authorizer = Authorizer([])
    with pytest.raises(ValueError, match="operation"):
        authorizer.allowed(ALICE, "reed", "topic", "t")
    with pytest.raises(ValueError, match="resource type"):
        authorizer.allowed(ALICE, "read", "topics", "t")


def test_cache_stays_correct_across_many_calls() -> None:
    rules = [
        allow(ALICE, "read", "topic", "t", "prefix"),
        deny(ALICE, "read", "topic", "t13"),
        allow(BOB, "write", "topic", "*"),
    ]
    authorizer = Authorizer(rules)
    # More distinct questions than the cache holds, asked twice over, so it is cleared mid-way.
    names = [f"t{i}" for i in range(12_000)] + ["x", "t13"]
    started = time.perf_counter()
    for _ in range(2):
        for name in names:
            expected_alice = name.startswith("t") and name != "t13"
            assert authorizer.allowed(ALICE, "read", "topic", name) is expected_alice
            assert authorizer.allowed(BOB, "write", "topic", name) is True
            assert authorizer.allowed(BOB, "read", "topic", name) is False
    elapsed = time.perf_counter() - started
    print(f"{6 * len(names)} decisions in {elapsed * 1000:.1f} ms")


def test_allowed_any() -> None:
    authorizer = Authorizer(
        [
            allow(ALICE, "read", "topic", "orders.", "prefix"),
            deny(BOB, "read", "topic", "*"),
            allow(BOB, "read", "topic", "t"),
        ]
    )
    assert authorizer.allowed_any(ALICE, "read", "topic")
    assert authorizer.allowed_any(ALICE, "describe", "topic")  # implied by read
    assert not authorizer.allowed_any(ALICE, "write", "topic")
    assert not authorizer.allowed_any(ALICE, "read", "group")
    assert not authorizer.allowed_any(BOB, "read", "topic")  # a deny of every topic
    assert Authorizer([], super_users=[BOB]).allowed_any(BOB, "write", "topic")


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        (AclRule("alice", "read", "topic", "t"), "principal"),
        (AclRule("User:", "read", "topic", "t"), "principal"),
        (AclRule("Group:x", "read", "topic", "t"), "principal"),
        (AclRule("User:a\nb", "read", "topic", "t"), "principal"),
        (AclRule(ALICE, "reed", "topic", "t"), "operation"),
        (AclRule(ALICE, "read", "topics", "t"), "resource type"),
        (AclRule(ALICE, "read", "topic", "t", pattern="glob"), "pattern"),
        (AclRule(ALICE, "read", "topic", "t", permission="maybe"), "permission"),
        (AclRule(ALICE, "read", "topic", ""), "empty"),
        (AclRule(ALICE, "read", "topic", "a\tb"), "control"),
        (AclRule(ALICE, "read", "topic", "*", pattern="prefix"), "prefix pattern cannot be"),
        (AclRule(ALICE, "alter", "cluster", "mycluster"), "cluster"),
        (AclRule(ALICE, "alter", "cluster", CLUSTER, pattern="prefix"), "cluster"),
    ],
)
def test_rule_check_errors(rule: AclRule, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        rule.check()


def test_rule_check_accepts_valid_rules() -> None:
    for rule in (
        AclRule("User:*", "all", "topic", "*"),
        AclRule(ALICE, "read", "group", "g.", "prefix", "deny"),
        AclRule("User:CN=alice,O=example", "alter", "cluster", CLUSTER),
    ):
        rule.check()


def test_rule_json_round_trip_and_str() -> None:
    rule = AclRule(ALICE, "read", "topic", "orders", "prefix")
    assert AclRule.from_json(rule.to_json()) == rule
    assert AclRule.from_json(
        {"principal": ALICE, "operation": "read", "resource_type": "topic", "name": "t"}
    ) == (AclRule(ALICE, "read", "topic", "t"))
    assert str(rule) == "allow User:alice read topic orders (prefix)"
    with pytest.raises(ValueError, match="unknown rule field"):
        AclRule.from_json({**rule.to_json(), "host": "*"})
    with pytest.raises(ValueError, match="lacks"):
        AclRule.from_json({"principal": ALICE})
    with pytest.raises(ValueError, match="principal"):
        AclRule.from_json({**rule.to_json(), "principal": "alice"})


# --- the store -------------------------------------------------------------------------------


def test_store_add_duplicate_delete_list(tmp_path: Path) -> None:
    store = AclStore(os.path.join(tmp_path, "security"))
    assert store.rules() == []
    read = allow(ALICE, "read", "topic", "t")
    write = allow(ALICE, "write", "topic", "t")
    assert store.add(read)
    assert store.add(write)
    assert not store.add(read)
    assert store.rules() == [read, write]
    assert store.delete(lambda rule: rule.operation == "read") == [read]
    assert store.delete(lambda rule: rule.operation == "read") == []
    assert store.rules() == [write]
    assert store.authorizer().allowed(ALICE, "write", "topic", "t")
    assert not store.authorizer().allowed(ALICE, "read", "topic", "t")
    assert store.authorizer(super_users=[ALICE]).allowed(ALICE, "read", "topic", "t")


def test_store_refuses_an_invalid_rule(tmp_path: Path) -> None:
    store = AclStore(tmp_path)
    with pytest.raises(ValueError, match="principal"):
        store.add(AclRule("alice", "read", "topic", "t"))
    assert not os.path.exists(os.path.join(tmp_path, "acls.json"))


def test_store_persists_with_private_modes(tmp_path: Path) -> None:
    directory = os.path.join(tmp_path, "security")
    rule = allow(ALICE, "read", "topic", "t", "prefix")
    AclStore(directory).add(rule)
    assert AclStore(directory).rules() == [rule]
    assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700
    path = os.path.join(directory, "acls.json")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    with open(path) as file:
        assert json.load(file) == {"version": 1, "rules": [rule.to_json()]}
    assert os.listdir(directory) == ["acls.json"]  # no temporary file left behind


def test_store_missing_file_is_no_rules(tmp_path: Path) -> None:
    store = AclStore(os.path.join(tmp_path, "nowhere"))
    store.load()
    assert store.rules() == []
    assert not store.authorizer().allowed(ALICE, "read", "topic", "t")
    assert not os.path.exists(os.path.join(tmp_path, "nowhere"))  # reading creates nothing


def test_reload_if_changed_sees_another_instances_write(tmp_path: Path) -> None:
    broker, cli = AclStore(tmp_path), AclStore(tmp_path)
    broker.load()
    assert not broker.reload_if_changed()
    rule = allow(ALICE, "read", "topic", "t")
    cli.add(rule)
    assert broker.reload_if_changed()
    assert broker.rules() == [rule]
    assert not broker.reload_if_changed()
    cli.delete(lambda r: True)
    assert broker.reload_if_changed()
    assert broker.rules() == []


def test_a_change_rereads_the_file_first(tmp_path: Path) -> None:
    first, second = AclStore(tmp_path), AclStore(tmp_path)
    read, write = allow(ALICE, "read", "topic", "t"), allow(ALICE, "write", "topic", "t")
    first.add(read)
    second.add(write)
    first.add(allow(BOB, "read", "topic", "t"))  # must not drop `write`
    assert AclStore(tmp_path).rules() == [read, write, allow(BOB, "read", "topic", "t")]


CORRUPT = [
    pytest.param(b"{not json", id="not-json"),
    pytest.param(b"\xff\xfe", id="not-utf8"),
    pytest.param(b"[]", id="not-an-object"),
    pytest.param(b'{"version": 2, "rules": []}', id="unknown-version"),
    pytest.param(b'{"version": 1}', id="no-rules"),
    pytest.param(b'{"version": 1, "rules": [42]}', id="rule-not-an-object"),
    pytest.param(
        b'{"version": 1, "rules": [{"principal": "alice", "operation": "read", "resource_type": "topic",'
        b' "name": "t"}]}',
        id="invalid-rule",
    ),
]


@pytest.mark.parametrize("content", CORRUPT)
def test_corrupt_file_is_invalid_config(tmp_path: Path, content: bytes) -> None:
    path = os.path.join(tmp_path, "acls.json")
    with open(path, "wb") as file:
        file.write(content)
    store = AclStore(tmp_path)
    with pytest.raises(InvalidConfigError, match=re.escape(path)):
        store.load()
    with pytest.raises(InvalidConfigError):
        store.add(allow(ALICE, "read", "topic", "t"))  # never saves over a file it cannot read
    with open(path, "rb") as file:
        assert file.read() == content


def test_reload_keeps_the_old_rules_when_the_file_turns_corrupt(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = AclStore(tmp_path)
    rule = allow(ALICE, "read", "topic", "t")
    store.add(rule)
    with open(os.path.join(tmp_path, "acls.json"), "w") as file:
        file.write("{oops")
    with caplog.at_level(logging.WARNING, logger="logbroker.security"):
        assert not store.reload_if_changed()
    assert store.rules() == [rule]
    assert any("acls.json" in record.getMessage() for record in caplog.records)


# --- the command line ------------------------------------------------------------------------


def run(*args: str, code: int = 0) -> str:
    result = CliRunner().invoke(acls, list(args))
    assert result.exit_code == code, result.output
    return result.output


def test_cli_add_list_delete(tmp_path: Path) -> None:
    d = ["--data-dir", str(tmp_path)]
    out = run(
        "add", *d, "--principal", ALICE, "--operation", "read", "--operation", "write", "--topic", "orders"
    )
    assert out.splitlines() == [
        "added allow User:alice read topic orders (literal)",
        "added allow User:alice write topic orders (literal)",
    ]
    out = run("add", *d, "--principal", ALICE, "--operation", "read", "--topic", "orders")
    assert out == "already present: allow User:alice read topic orders (literal)\n"
    run("add", *d, "--principal", "User:*", "--operation", "all", "--topic", "secret.", "--prefix", "--deny")
    run("add", *d, "--principal", BOB, "--operation", "read", "--group", "g")
    run("add", *d, "--principal", "User:admin", "--operation", "alter", "--cluster")

    assert run("list", *d).splitlines() == [
        "allow User:alice read topic orders (literal)",
        "allow User:alice write topic orders (literal)",
        "deny User:* all topic secret. (prefix)",
        "allow User:bob read group g (literal)",
        f"allow User:admin alter cluster {CLUSTER} (literal)",
    ]
    assert run("list", *d, "--principal", BOB).splitlines() == ["allow User:bob read group g (literal)"]
    assert run("list", *d, "--cluster").splitlines() == [
        f"allow User:admin alter cluster {CLUSTER} (literal)"
    ]
    assert json.loads(run("list", *d, "--topic", "orders", "--json")) == [
        allow(ALICE, "read", "topic", "orders").to_json(),
        allow(ALICE, "write", "topic", "orders").to_json(),
    ]

    assert run("delete", *d, "--principal", ALICE, "--operation", "write").splitlines() == [
        "deleted allow User:alice write topic orders (literal)"
    ]
    assert run("delete", *d, "--deny").splitlines() == ["deleted deny User:* all topic secret. (prefix)"]
    out = run("delete", *d, "--topic", "orders", "--operation", "read", "--operation", "write")
    assert out.splitlines() == ["deleted allow User:alice read topic orders (literal)"]
    assert len(run("list", *d).splitlines()) == 2

    store = AclStore(os.path.join(tmp_path, "security"))
    assert store.authorizer().allowed(BOB, "read", "group", "g")


def test_cli_data_dir_from_the_environment(tmp_path: Path) -> None:
    result = CliRunner(env={"LOGBROKER_DATA_DIR": str(tmp_path)}).invoke(
        acls, ["add", "--principal", ALICE, "--operation", "read", "--topic", "t"]
    )
    assert result.exit_code == 0, result.output
    assert AclStore(os.path.join(tmp_path, "security")).rules() == [allow(ALICE, "read", "topic", "t")]


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["--principal", ALICE, "--operation", "read"], id="no-resource"),
        pytest.param(["--principal", ALICE, "--operation", "read", "--topic", "t", "--group", "g"], id="two"),
        pytest.param(
            ["--principal", ALICE, "--operation", "read", "--topic", "t", "--cluster"], id="cluster-too"
        ),
        pytest.param(["--principal", "alice", "--operation", "read", "--topic", "t"], id="bad-principal"),
        pytest.param(["--principal", ALICE, "--operation", "reed", "--topic", "t"], id="bad-operation"),
        pytest.param(["--principal", ALICE, "--topic", "t"], id="no-operation"),
        pytest.param(
            ["--principal", ALICE, "--operation", "read", "--topic", "*", "--prefix"], id="prefix-star"
        ),
    ],
)
def test_cli_add_usage_errors(tmp_path: Path, args: list[str]) -> None:
    run("add", "--data-dir", str(tmp_path), *args, code=2)
    assert AclStore(os.path.join(tmp_path, "security")).rules() == []


def test_cli_delete_errors(tmp_path: Path) -> None:
    d = ["--data-dir", str(tmp_path)]
    run("delete", *d, code=2)  # no filter at all
    out = run("delete", *d, "--principal", ALICE, code=1)
    assert "no matching rule" in out
    run("add", *d, "--principal", ALICE, "--operation", "read", "--topic", "t")
    run("delete", *d, "--principal", BOB, code=1)
    run("delete", *d, "--topic", "t", "--prefix", code=1)
    assert len(run("list", *d).splitlines()) == 1


def test_cli_takes_the_security_dir_serve_takes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`serve --security-dir` puts the files elsewhere: `acls` (and `users`) must reach them."""
    monkeypatch.chdir(tmp_path)  # the default data directory, ./data, would be here
    elsewhere = tmp_path / "elsewhere"
    run(
        "add",
        "--principal",
        "User:alice",
        "--operation",
        "read",
        "--topic",
        "t",
        "--security-dir",
        str(elsewhere),
    )
    assert [str(r) for r in AclStore(str(elsewhere)).rules()] == ["allow User:alice read topic t (literal)"]
    assert not (tmp_path / "data").exists()
