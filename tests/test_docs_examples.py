"""Every example in README.md and docs/*.md runs, as a reader would run it, in document order.

A ```sh block is a list of commands and a ```python block a program (untagged blocks are
synopses, output, layouts or the command lines of measured benchmarks, and are not run). Each
document is one session: a fresh temporary directory as the working directory, holding a `.venv`
that is this test run's environment (so `.venv/bin/logbroker` works as in the README, and bare
`logbroker` is on the PATH) and the certificates the TLS examples name (`ca.pem`, `broker.pem`,
`broker.key`). The broker is the one the document starts:

- A `logbroker serve ...` command starts the session's broker in the background, replacing the
  one before it (stopped with SIGTERM, which must exit 0), exactly as written except that the
  ports become free ones: 9400 and 9092 in every example stand for the session's native and Kafka
  ports. A document that runs a command before starting a broker gets one started the way the
  README's quick start starts it (`logbroker serve --kafka-port 9092`, data in `./data`).
- Every other command runs in bash (`pipefail`) and must exit 0 within two minutes; `export
  NAME=VALUE` sets a variable for the rest of the session. The quick start's install step is this
  test run's own (`.ci/run` installs exactly that way on a fresh machine) and its `pytest` is the
  suite this test belongs to, so neither runs again here.
- A ```python block runs as a script with this environment's Python. One that defines
  `test_...` functions is a test file instead: those are run by pytest in a separate, empty
  project (no configuration, so no `trio_mode`), as they would be in a user's project.
- Paths the operations guide writes for a server (`/var/lib/logbroker`) are made relative to the
  session's directory.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BIN = Path(sys.executable).parent
_FENCE = re.compile(r"^```(sh|python)\n(.*?)^```", re.S | re.M)
_INSTALL = re.compile(r"python3 -m venv \.venv && \.venv/bin/pip install [^&]+&& ")
_COMMAND_TIMEOUT = 120.0


def examples(document: Path) -> list[tuple[str, str, int]]:
    """(language, code, line number) of each runnable block, in document order."""
    text = document.read_text()
    return [(m[1], m[2], text.count("\n", 0, m.start()) + 1) for m in _FENCE.finditer(text)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Session:
    def __init__(self, directory: Path, document: Path) -> None:
        self.directory = directory
        self.document = document.relative_to(ROOT)
        self.native_port = _free_port()
        self.kafka_port = _free_port()
        self.env = {
            **os.environ,
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "LOGBROKER_BOOTSTRAP": f"127.0.0.1:{self.native_port}",
        }
        self.env.pop("LOGBROKER_DATA_DIR", None)
        self.broker: subprocess.Popen[bytes] | None = None
        self.tests: list[str] = []
        (directory / ".venv").symlink_to(BIN.parent, target_is_directory=True)
        ca = trustme.CA()
        issued = ca.issue_cert("127.0.0.1", "localhost")
        ca.cert_pem.write_to_path(str(directory / "ca.pem"))
        issued.cert_chain_pems[0].write_to_path(str(directory / "broker.pem"))
        issued.private_key_pem.write_to_path(str(directory / "broker.key"))

    def localise(self, code: str) -> str:
        code = re.sub(r"\b9400\b", str(self.native_port), code)
        code = re.sub(r"\b9092\b", str(self.kafka_port), code)
        return code.replace("/var/lib/logbroker", str(self.directory / "var/lib/logbroker"))

    def where(self, line: int) -> str:
        return f"{self.document}:{line}"

    # -- the broker ------------------------------------------------------------------------

    def serve(self, command: str, line: int) -> None:
        self.stop_broker()
        if not re.search(r"--port\b", command):
            command += f" --port {self.native_port}"
        log = open(self.directory / "serve.log", "ab")  # noqa: SIM115 - the child holds it
        self.broker = subprocess.Popen(
            ["bash", "-c", "exec " + command],
            cwd=self.directory,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=log,
        )
        log.close()
        assert self.broker.stdout is not None
        watchdog = threading.Timer(60, self.broker.kill)
        watchdog.start()
        try:
            first = self.broker.stdout.readline().decode()
        finally:
            watchdog.cancel()
        assert first.startswith("logbroker listening on"), (
            f"{self.where(line)}: `{command}` did not start:\n{self.log_tail()}"
        )

    def ensure_broker(self) -> None:
        if self.broker is None:
            self.serve(f"logbroker serve --kafka-port {self.kafka_port}", 0)

    def stop_broker(self) -> None:
        if self.broker is None:
            return
        broker, self.broker = self.broker, None
        broker.send_signal(signal.SIGTERM)
        try:
            code = broker.wait(timeout=60)
        except subprocess.TimeoutExpired:
            broker.kill()
            broker.wait()
            raise AssertionError(
                f"{self.document}: the broker did not stop on SIGTERM:\n{self.log_tail()}"
            ) from None
        finally:
            assert broker.stdout is not None
            broker.stdout.close()
        assert code == 0, f"{self.document}: the broker exited {code} on SIGTERM:\n{self.log_tail()}"

    def log_tail(self) -> str:
        path = self.directory / "serve.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-20:]) if path.exists() else ""

    # -- the examples ----------------------------------------------------------------------

    def run(self, argv: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            argv,
            cwd=cwd or self.directory,
            env=self.env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=_COMMAND_TIMEOUT,
        )

    def run_shell(self, code: str, line: int) -> None:
        for command in _commands(self.localise(code)):
            command = _INSTALL.sub("", command)
            if command == ".venv/bin/pytest":
                continue  # the suite this test is part of
            if re.match(r"export \w+=", command):
                name, _, value = command.removeprefix("export ").partition("=")
                self.env[name] = shlex.split(value)[0] if value else ""
                continue
            if re.match(r"(\S*/)?logbroker serve\b", command):
                self.serve(command, line)
                continue
            if command.split()[0] == "kcat" and shutil.which("kcat") is None:
                if os.environ.get("CI"):
                    pytest.fail("kcat is not installed (CI installs it: .ci/run)")
                pytest.skip("kcat is not installed")
            self.ensure_broker()
            result = self.run(["bash", "-o", "pipefail", "-c", command])
            assert result.returncode == 0, (
                f"{self.where(line)}: `{command}` exited {result.returncode}\n"
                f"stdout:\n{result.stdout[-2000:]}\nstderr:\n{result.stderr[-2000:]}\n"
                f"broker log:\n{self.log_tail()}"
            )

    def run_python(self, code: str, line: int) -> None:
        code = self.localise(code)
        if re.search(r"^def test_|^async def test_", code, re.M):
            self.tests.append(code)
            return
        self.ensure_broker()
        script = self.directory / f"example_{line}.py"
        script.write_text(code)
        result = self.run([sys.executable, str(script)])
        assert result.returncode == 0, (
            f"{self.where(line)}: the example failed\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}\n"
            f"broker log:\n{self.log_tail()}"
        )

    def run_tests(self) -> None:
        """The examples that are tests, in a project of their own with nothing configured."""
        if not self.tests:
            return
        project = self.directory / "user-project"
        project.mkdir()
        for number, code in enumerate(self.tests):
            (project / f"test_example_{number}.py").write_text(code)
        result = self.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "error"], cwd=project
        )
        expected = sum(len(re.findall(r"^(?:async )?def test_", code, re.M)) for code in self.tests)
        assert result.returncode == 0 and f"{expected} passed" in result.stdout, (
            f"{self.document}: the test examples failed in a fresh project\n{result.stdout[-4000:]}"
        )


def _commands(code: str) -> Iterator[str]:
    """The commands of a shell block: lines joined at a trailing backslash, blank lines and
    comment lines left out."""
    pending = ""
    for raw in code.splitlines():
        if raw.rstrip().endswith("\\"):
            pending += raw.rstrip()[:-1] + " "
            continue
        command = (pending + raw).strip()
        pending = ""
        if command and not command.startswith("#"):
            yield command


@pytest.mark.parametrize(
    "document", [d for d in DOCUMENTS if examples(d)], ids=lambda d: str(d.relative_to(ROOT))
)
def test_the_examples_run(document: Path, tmp_path: Path) -> None:
    session = Session(tmp_path, document)
    try:
        for language, code, line in examples(document):
            if language == "sh":
                session.run_shell(code, line)
            else:
                session.run_python(code, line)
        session.run_tests()
    finally:
        session.stop_broker()


def test_the_quick_start_is_two_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    quick_start = readme.split("## Quick start", 1)[1].split("##", 1)[0]
    commands = re.findall(r"```sh\n(.*?)```", quick_start, re.S)[0].strip().splitlines()
    assert len(commands) == 2
    assert commands[0].endswith("logbroker serve --kafka-port 9092")
    assert commands[1].endswith("pytest")


def test_a_command_that_fails_fails_the_document(tmp_path: Path) -> None:
    """The harness itself: a failing command or a failing program is an error, not a pass."""
    document = tmp_path / "bad.md"
    document.write_text("```sh\nlogbroker topics describe missing\n```\n")
    (tmp_path / "session").mkdir()
    session = Session(tmp_path / "session", ROOT / "README.md")
    try:
        with pytest.raises(AssertionError, match="exited 1"):
            for _, code, line in examples(document):
                session.run_shell(code, line)
        with pytest.raises(AssertionError, match="the example failed"):
            session.run_python("raise SystemExit(3)\n", 1)
    finally:
        session.stop_broker()
