"""The whole security setup from the command line, across processes: `users add` and `acls add`
write the files, `serve --authenticate --authorize` (a subprocess) reads them, a client command
logs in, and a rule added while the broker runs applies without a restart."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from logbroker.testing import ServeProcess

CLI = [sys.executable, "-m", "logbroker.cli"]


def cli(*args: str, env: dict[str, str], stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], env=env, input=stdin, capture_output=True, text=True, timeout=60)


def test_users_acls_serve_and_a_client_from_the_command_line(tmp_path: Path) -> None:
    env = {**os.environ, "LOGBROKER_DATA_DIR": str(tmp_path / "data")}  # read by all three
    assert cli("users", "add", "alice", "--password-stdin", env=env, stdin="wonderland\n").returncode == 0
    added = cli(
        "acls", "add", "--principal", "User:alice", "--operation", "create", "--topic", "orders", env=env
    )
    assert added.returncode == 0, added.stderr
    with ServeProcess("--authenticate", "--authorize", memory=False, env=env) as broker:  # data dir from env
        client_env = {**env, "LOGBROKER_BOOTSTRAP": broker.address, "LOGBROKER_PASSWORD": "wonderland"}
        created = cli("topics", "create", "orders", "--user", "alice", env=client_env)
        assert created.returncode == 0, created.stderr
        listed = cli("topics", "list", "--user", "alice", env=client_env)
        assert listed.returncode == 0 and listed.stdout.splitlines() == [
            "NAME PARTITIONS"
        ]  # no describe right
        # A rule added while the broker runs applies within a second or so.
        cli(
            "acls",
            "add",
            "--principal",
            "User:alice",
            "--operation",
            "describe",
            "--topic",
            "orders",
            env=env,
        )
        deadline = time.monotonic() + 10
        while "orders" not in cli("topics", "list", "--user", "alice", env=client_env).stdout:
            assert time.monotonic() < deadline, "the new rule was not taken up"
            time.sleep(0.2)
        wrong = cli("topics", "list", "--user", "alice", env={**client_env, "LOGBROKER_PASSWORD": "x"})
        assert wrong.returncode == 1 and "authentication failed" in wrong.stderr
        code, err = broker.stop()
    assert code == 0, err[-2000:]
    assert "security: authentication=SASL (1 user(s)) authorization=ACLs (1 rule(s)" in err
