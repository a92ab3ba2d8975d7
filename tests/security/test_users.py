"""The credential store (`users.json`) and `logbroker users add|delete|list`: real files in a temp
directory; the file never holds a password in any encoding; a broker's store sees another
process's change without a restart."""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from logbroker.cli.users import users
from logbroker.errors import InvalidConfigError
from logbroker.security.scram import MECHANISMS, ScramServer, check_password
from logbroker.security.users import UserStore, open_store, security_dir

PASSWORD = "correct horse battery staple"
FAST = 4096  # iterations: the minimum keeps the tests quick


@pytest.fixture
def directory(tmp_path: Path) -> str:
    return security_dir(str(tmp_path / "data"))


def test_security_dir() -> None:
    assert security_dir("/var/lib/lb") == os.path.join("/var/lib/lb", "security")


def test_missing_file_means_no_users(directory: str) -> None:
    store = open_store(directory)
    assert store.usernames() == []
    assert store.credential("alice", "SCRAM-SHA-256") is None
    assert not os.path.exists(directory)  # reading creates nothing


def test_add_replace_delete_list(directory: str) -> None:
    store = open_store(directory)
    assert store.add("alice", PASSWORD, iterations=FAST) is True
    assert store.add("bob", "other", iterations=FAST) is True
    assert store.usernames() == ["alice", "bob"]
    assert store.mechanisms("alice") == list(MECHANISMS)
    old = store.credential("alice", "SCRAM-SHA-256")
    assert old is not None and check_password(old, PASSWORD)

    assert store.add("alice", "new password", iterations=FAST) is False
    new = store.credential("alice", "SCRAM-SHA-256")
    assert new is not None and new.salt != old.salt
    assert check_password(new, "new password") and not check_password(new, PASSWORD)

    assert store.delete("alice") is True
    assert store.delete("alice") is False
    assert store.usernames() == ["bob"]
    assert store.mechanisms("alice") == []
    assert open_store(directory).usernames() == ["bob"]


def test_add_refuses_bad_input(directory: str) -> None:
    store = UserStore(directory)
    with pytest.raises(ValueError):
        store.add("no spaces", PASSWORD)
    with pytest.raises(ValueError):
        store.add("alice", "")
    with pytest.raises(ValueError):
        store.add("alice", PASSWORD, iterations=1000)
    assert not os.path.exists(store.path)


def test_file_format_and_modes(directory: str) -> None:
    store = UserStore(directory)
    store.add("alice", PASSWORD, iterations=FAST)
    assert store.path == os.path.join(directory, "users.json")
    assert stat.S_IMODE(os.stat(store.path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700
    assert not os.path.exists(store.path + ".tmp")
    with open(store.path) as file:
        document = json.load(file)
    assert document["version"] == 1
    entry = document["users"]["alice"]["SCRAM-SHA-512"]
    assert set(entry) == {"mechanism", "salt", "iterations", "stored_key", "server_key"}
    assert entry["iterations"] == FAST and entry["mechanism"] == "SCRAM-SHA-512"


def test_file_holds_no_password_in_any_encoding(directory: str) -> None:
    store = UserStore(directory)
    store.add("alice", PASSWORD, iterations=FAST)
    with open(store.path, "rb") as file:
        content = file.read()
    raw = PASSWORD.encode()
    for encoded in (
        raw,
        raw.upper(),
        base64.b64encode(raw),
        base64.urlsafe_b64encode(raw),
        base64.b64encode(raw).rstrip(b"="),
        base64.b32encode(raw),
        base64.b16encode(raw),
        binascii.hexlify(raw),
        raw.decode().encode("utf-16-le"),
        json.dumps(PASSWORD).encode(),
    ):
        assert encoded not in content
        assert encoded.lower() not in content.lower()


def test_stale_tmp_file_with_loose_mode_is_not_reused_loosely(directory: str) -> None:
    os.makedirs(directory)
    store = UserStore(directory)
    Path(store.path + ".tmp").write_text("junk")
    os.chmod(store.path + ".tmp", 0o644)
    store.add("alice", PASSWORD, iterations=FAST)
    assert stat.S_IMODE(os.stat(store.path).st_mode) == 0o600


def test_reload_if_changed_sees_another_writer(directory: str) -> None:
    broker = open_store(directory)
    assert broker.reload_if_changed() is False
    UserStore(directory).add("alice", PASSWORD, iterations=FAST)  # as `logbroker users add` would
    assert broker.credential("alice", "SCRAM-SHA-256") is None
    assert broker.reload_if_changed() is True
    assert broker.usernames() == ["alice"]
    assert broker.reload_if_changed() is False

    UserStore(directory).delete("alice")
    assert broker.reload_if_changed() is True
    assert broker.usernames() == []


def test_reload_sees_file_removed(directory: str) -> None:
    broker = UserStore(directory)
    broker.add("alice", PASSWORD, iterations=FAST)
    os.remove(broker.path)
    assert broker.reload_if_changed() is True
    assert broker.usernames() == []


def test_server_lookup_through_store(directory: str) -> None:
    from logbroker.security.scram import ScramClient

    broker = open_store(directory)
    UserStore(directory).add("alice", PASSWORD, iterations=FAST)

    def lookup(name: str):  # type: ignore[no-untyped-def]
        broker.reload_if_changed()
        return broker.credential(name, "SCRAM-SHA-256")

    client = ScramClient("SCRAM-SHA-256", "alice", PASSWORD)
    server = ScramServer("SCRAM-SHA-256", lookup)
    client.verify(server.step(client.final(server.step(client.first()))))
    assert server.username == "alice"


CORRUPT = [
    b"",
    b"{not json",
    b"\xff\xfe",
    b"[]",
    b'{"version": 2, "users": {}}',
    b'{"version": 1}',
    b'{"version": 1, "users": []}',
    b'{"version": 1, "users": {"bad name": {}}}',
    b'{"version": 1, "users": {"alice": []}}',
    b'{"version": 1, "users": {"alice": {"SCRAM-SHA-256": {"salt": "x"}}}}',
]


@pytest.mark.parametrize("content", CORRUPT)
def test_corrupt_file_is_invalid_config_with_path(directory: str, content: bytes) -> None:
    os.makedirs(directory)
    store = UserStore(directory)
    Path(store.path).write_bytes(content)
    with pytest.raises(InvalidConfigError, match=f"^{store.path}: ") as info:
        store.load()
    assert info.value.code == 40


def test_credential_under_the_wrong_mechanism_is_corrupt(directory: str) -> None:
    store = UserStore(directory)
    store.add("alice", PASSWORD, iterations=FAST)
    document = json.loads(Path(store.path).read_text())
    entry = document["users"]["alice"]
    entry["SCRAM-SHA-256"], entry["SCRAM-SHA-512"] = entry["SCRAM-SHA-512"], entry["SCRAM-SHA-256"]
    Path(store.path).write_text(json.dumps(document))
    with pytest.raises(InvalidConfigError, match="under SCRAM-SHA-256"):
        open_store(directory)


def test_reload_keeps_old_users_when_the_file_goes_bad(
    directory: str, caplog: pytest.LogCaptureFixture
) -> None:
    broker = UserStore(directory)
    broker.add("alice", PASSWORD, iterations=FAST)
    with open(broker.path, "w") as file:
        file.write("{truncated")
    with caplog.at_level(logging.WARNING, logger="logbroker.security"):
        assert broker.reload_if_changed() is False
        assert broker.reload_if_changed() is False  # warned once, not on every login
    assert broker.usernames() == ["alice"]
    warnings = [r for r in caplog.records if r.name == "logbroker.security"]
    assert len(warnings) == 1 and broker.path in warnings[0].getMessage()


def test_add_refuses_to_overwrite_a_corrupt_file(directory: str) -> None:
    os.makedirs(directory)
    store = UserStore(directory)
    Path(store.path).write_text("{oops")
    with pytest.raises(InvalidConfigError):
        store.add("alice", PASSWORD, iterations=FAST)
    assert Path(store.path).read_text() == "{oops"


# --- the CLI -------------------------------------------------------------------------------------


@pytest.fixture
def data_dir(tmp_path: Path) -> str:
    return str(tmp_path / "data")


def run(args: list[str], **kwargs: object):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(users, args, catch_exceptions=False, **kwargs)  # type: ignore[arg-type]


def test_cli_add_with_password_stdin(data_dir: str) -> None:
    result = run(
        ["add", "alice", "--password-stdin", "--iterations", "4096", "--data-dir", data_dir],
        input=PASSWORD + "\n",
    )
    assert result.exit_code == 0, result.output
    assert result.output == "added user alice (SCRAM-SHA-256, SCRAM-SHA-512)\n"
    credential = open_store(security_dir(data_dir)).credential("alice", "SCRAM-SHA-512")
    assert credential is not None and credential.iterations == 4096
    assert check_password(credential, PASSWORD)  # the newline is not part of the password


def test_cli_add_with_env_password_and_env_data_dir(data_dir: str) -> None:
    env = {"LOGBROKER_PASSWORD": PASSWORD, "LOGBROKER_DATA_DIR": data_dir}
    assert run(["add", "alice"], env=env).output == "added user alice (SCRAM-SHA-256, SCRAM-SHA-512)\n"
    env["LOGBROKER_PASSWORD"] = "changed"
    assert run(["add", "alice"], env=env).output == "updated user alice (SCRAM-SHA-256, SCRAM-SHA-512)\n"
    credential = open_store(security_dir(data_dir)).credential("alice", "SCRAM-SHA-256")
    assert credential is not None and check_password(credential, "changed")
    assert credential.iterations == 8192


def test_cli_add_prompts_twice(data_dir: str) -> None:
    result = run(
        ["add", "alice", "--data-dir", data_dir],
        input=f"{PASSWORD}\n{PASSWORD}\n",
        env={"LOGBROKER_PASSWORD": None},
    )
    assert result.exit_code == 0, result.output
    assert PASSWORD not in result.output
    credential = open_store(security_dir(data_dir)).credential("alice", "SCRAM-SHA-256")
    assert credential is not None and check_password(credential, PASSWORD)


def test_cli_add_refuses_empty_password(data_dir: str) -> None:
    result = run(["add", "alice", "--password-stdin", "--data-dir", data_dir], input="\n")
    assert result.exit_code == 1
    assert "must not be empty" in result.output
    assert open_store(security_dir(data_dir)).usernames() == []


@pytest.mark.parametrize("args", [["add", "bad name!"], ["add", "alice", "--iterations", "100"]])
def test_cli_add_usage_errors(data_dir: str, args: list[str]) -> None:
    result = run([*args, "--password-stdin", "--data-dir", data_dir], input="pw\n")
    assert result.exit_code == 2
    assert open_store(security_dir(data_dir)).usernames() == []


def test_cli_delete(data_dir: str) -> None:
    run(["add", "alice", "--password-stdin", "--iterations", "4096", "--data-dir", data_dir], input="pw\n")
    result = run(["delete", "alice", "--data-dir", data_dir])
    assert (result.exit_code, result.output) == (0, "deleted user alice\n")
    result = run(["delete", "alice", "--data-dir", data_dir])
    assert result.exit_code == 1
    assert "Error: no user 'alice'" in result.output


def test_cli_list(data_dir: str) -> None:
    assert run(["list", "--data-dir", data_dir]).output == ""
    for name in ("bob", "alice"):
        run(
            ["add", name, "--password-stdin", "--iterations", "4096", "--data-dir", data_dir],
            input=PASSWORD + "\n",
        )
    result = run(["list", "--data-dir", data_dir])
    assert result.output == "alice  SCRAM-SHA-256,SCRAM-SHA-512\nbob  SCRAM-SHA-256,SCRAM-SHA-512\n"
    result = run(["list", "--json", "--data-dir", data_dir])
    assert json.loads(result.output) == [
        {"user": "alice", "mechanisms": ["SCRAM-SHA-256", "SCRAM-SHA-512"]},
        {"user": "bob", "mechanisms": ["SCRAM-SHA-256", "SCRAM-SHA-512"]},
    ]
    credential = open_store(security_dir(data_dir)).credential("alice", "SCRAM-SHA-256")
    assert credential is not None
    for secret in (
        PASSWORD,
        base64.b64encode(credential.stored_key).decode(),
        base64.b64encode(credential.salt).decode(),
    ):
        assert secret not in result.output


def test_cli_security_dir_overrides_data_dir(tmp_path: Path, data_dir: str) -> None:
    elsewhere = str(tmp_path / "secrets")
    args = ["--data-dir", data_dir, "--security-dir", elsewhere]
    run(["add", "alice", "--password-stdin", "--iterations", "4096", *args], input="pw\n")
    assert open_store(elsewhere).usernames() == ["alice"]
    assert open_store(security_dir(data_dir)).usernames() == []
    assert run(["list", *args]).output == "alice  SCRAM-SHA-256,SCRAM-SHA-512\n"
    assert run(["delete", "alice", *args]).output == "deleted user alice\n"
