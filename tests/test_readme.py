"""The README's examples run as written (against a broker on a free port)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import trustme

from logbroker.security.users import UserStore
from logbroker.testing import BrokerThread

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def test_the_quick_start_is_two_commands() -> None:
    quick_start = README.split("## Quick start", 1)[1].split("##", 1)[0]
    commands = re.findall(r"```sh\n(.*?)```", quick_start, re.S)[0].strip().splitlines()
    assert len(commands) == 2
    assert commands[0].endswith("logbroker serve --kafka-port 9092") and commands[1].endswith("pytest")


def test_the_kafka_example_runs() -> None:
    [script] = [b for b in re.findall(r"```python\n(.*?)```", README, re.S) if "127.0.0.1:9092" in b]
    # The producer creates the topic, as on a broker started the way the README starts it.
    with BrokerThread(kafka_port=0, kafka_group_initial_delay=0.0) as broker:
        exec(
            compile(script.replace("127.0.0.1:9092", broker.kafka_address), "README.md", "exec"),
            {"__name__": "readme"},
        )


def test_the_python_examples_run() -> None:
    blocks = re.findall(r"```python\n(.*?)```", README, re.S)
    scripts = [b for b in blocks if "127.0.0.1:9400" in b and "ssl_context" not in b and "username=" not in b]
    assert len(scripts) >= 2
    for script in scripts:
        with BrokerThread() as broker:
            exec(
                compile(script.replace("127.0.0.1:9400", broker.address), "README.md", "exec"),
                {"__name__": "readme"},
            )


def test_the_tls_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    [script] = [b for b in re.findall(r"```python\n(.*?)```", README, re.S) if "ssl_context" in b]
    ca = trustme.CA()
    issued = ca.issue_cert("127.0.0.1")
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    issued.cert_chain_pems[0].write_to_path(str(tmp_path / "broker.pem"))
    issued.private_key_pem.write_to_path(str(tmp_path / "broker.key"))
    monkeypatch.chdir(tmp_path)  # the example names ca.pem
    with BrokerThread(tls_cert="broker.pem", tls_key="broker.key") as broker:
        exec(
            compile(script.replace("127.0.0.1:9400", broker.address), "README.md", "exec"),
            {"__name__": "readme"},
        )


def test_the_login_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    [script] = [b for b in re.findall(r"```python\n(.*?)```", README, re.S) if "username=" in b]
    UserStore(str(tmp_path)).add("alice", "wonderland", iterations=4096)
    monkeypatch.setenv("LOGBROKER_PASSWORD", "wonderland")
    with BrokerThread(authenticate=True, security_dir=str(tmp_path)) as broker:
        exec(
            compile(script.replace("127.0.0.1:9400", broker.address), "README.md", "exec"),
            {"__name__": "readme"},
        )


def test_the_serve_process_example_runs(tmp_path: Path) -> None:
    [script] = [b for b in re.findall(r"```python\n(.*?)```", README, re.S) if "ServeProcess(" in b]
    namespace: dict[str, object] = {"__name__": "readme"}
    exec(compile(script, "README.md", "exec"), namespace)
    namespace["test_acked_records_survive_kill_9"](tmp_path)  # type: ignore[operator]
