"""Every client command gives up on a broker that does not answer (--timeout), and the shared
connection options (-b, --bootstrap-server): the CLI as a subprocess, against listeners in
this process (`tests.misbehaving`) and a real broker."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import click
import trio

from logbroker.cli.common import CONNECT_TIMEOUT
from logbroker.cli.main import cli
from logbroker.testing import BrokerThread
from tests.cli.conftest import Run
from tests.misbehaving import AnswersHelloOnly, ServingThread, answers_http, silent

#: One invocation of each kind of command that talks to a broker; all of them connect through
#: `cli.common.connect` with the shared --timeout (the test below checks they all carry it).
CLIENT_COMMANDS = [
    ("topics", "list"),
    ("groups", "list"),
    ("offsets",),
    ("consume", "t"),
    ("consume", "t", "--group", "g"),
    ("consume", "t", "--idle-timeout", "0.2"),  # no records for 0.2 s is not "no broker"
    ("produce", "t"),
]


def client_commands() -> dict[str, click.Command]:
    """Every command (by its path) that talks to a broker: those with --bootstrap."""
    found = {}

    def walk(command: click.Command, path: str) -> None:
        if isinstance(command, click.Group):
            for name, sub in command.commands.items():
                walk(sub, f"{path} {name}".strip())
        elif any(p.name == "bootstrap" for p in command.params):
            found[path] = command

    walk(cli, "")
    return found


def test_every_client_command_takes_one_timeout_of_at_most_30_s() -> None:
    commands = client_commands()
    assert {"topics create", "topics list", "groups reset-offsets", "offsets", "consume", "produce"} <= set(
        commands
    )
    for path, command in commands.items():
        [timeout] = [p for p in command.params if "--timeout" in p.opts]  # produce's is the shared one
        assert timeout.default == 30.0, path
        assert timeout.envvar == "LOGBROKER_TIMEOUT"
        [bootstrap] = [p for p in command.params if p.name == "bootstrap"]
        assert set(bootstrap.opts) == {"--bootstrap", "-b", "--bootstrap-server"}, path
    assert CONNECT_TIMEOUT <= 30.0


def test_every_client_command_gives_up_on_a_port_that_never_answers(run: Run) -> None:
    with ServingThread(silent) as address:

        def attempt(args: tuple[str, ...]) -> tuple[tuple[str, ...], float, int, str]:
            started = time.monotonic()
            done = run(*args, "-b", address, "--timeout", "1", input="x\n", timeout=60)
            return args, time.monotonic() - started, done.returncode, done.stderr

        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(attempt, CLIENT_COMMANDS))
        by_env = run("topics", "list", "-b", address, env={"LOGBROKER_TIMEOUT": "0.5"})
    for args, elapsed, code, stderr in results:
        assert code == 1, (args, stderr)
        [line] = stderr.strip().splitlines()
        assert f"cannot connect to {address}: it accepted the connection but sent no answer" in line, args
        assert elapsed < 1 + 15, args  # the interpreter's start-up, on a busy machine, and 1 s
    assert by_env.returncode == 1 and "within 0.5 s" in by_env.stderr


def test_consume_exits_1_when_the_broker_stops_answering_even_after_its_idle_timeout(run: Run) -> None:
    broker = AnswersHelloOnly()
    with ServingThread(broker) as address:
        for extra in ((), ("--group", "g")):
            started = time.monotonic()
            done = run("consume", "t", *extra, "--idle-timeout", "0.2", "-b", address, "--timeout", "1.5")
            assert done.returncode == 1, done.stderr
            assert time.monotonic() - started >= 1.5  # the request timeout ended it, not the idle one
            assert done.stderr.strip().splitlines() == [
                f"Error: the broker at {address} did not answer a DescribeTopic request within 1.5 s"
            ]


def test_a_request_never_answered_ends_a_command_with_what_timed_out(run: Run) -> None:
    with ServingThread(AnswersHelloOnly()) as address:
        done = run("groups", "list", "--bootstrap-server", address, "--timeout", "0.5")
    assert done.returncode == 1
    assert done.stderr == f"Error: the broker at {address} did not answer a ListGroups request within 0.5 s\n"


def test_an_http_server_is_named_as_one(run: Run) -> None:
    with ServingThread(answers_http) as address:
        done = run("topics", "list", "-b", address)
    assert done.returncode == 1
    assert (
        done.stderr
        == f"Error: {address} is an HTTP server (it answered in HTTP), not logbroker's native port\n"
    )


def test_the_bootstrap_option_takes_kafkas_spellings(run: Run) -> None:
    with BrokerThread() as broker:
        assert run("topics", "create", "spelled", "-b", broker.address).returncode == 0
        listed = run("topics", "list", "--bootstrap-server", broker.address, "--json")
    assert listed.returncode == 0 and '"spelled"' in listed.stdout


def test_ctrl_c_ends_any_client_command_with_exit_130() -> None:
    """Regression (review of issue 14): click turned Ctrl-C into "Aborted!" and exit 1 for every
    command but produce and consume."""
    connected = threading.Event()

    async def hold(stream: trio.SocketStream) -> None:
        connected.set()
        await silent(stream)

    with (
        ServingThread(hold) as address,
        subprocess.Popen(
            # `logbroker topics list`, with Ctrl-C as a terminal gives it: a suite run as a
            # background job (`.ci/run &`) passes SIGINT on ignored, and Python keeps ignoring it.
            [sys.executable, "-c", _WITH_CTRL_C, "topics", "list", "-b", address],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        ) as command,
    ):
        assert connected.wait(30)  # it is waiting for an answer now
        command.send_signal(signal.SIGINT)
        out, err = command.communicate(timeout=30)
    assert (command.returncode, out, err) == (130, "", "interrupted\n")


def test_a_timeout_of_zero_is_a_usage_error(run: Run) -> None:
    done = run("topics", "list", "--timeout", "0")
    assert done.returncode == 2 and "--timeout" in done.stderr


_WITH_CTRL_C = (
    "import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "sys.argv[0] = 'logbroker'; runpy.run_module('logbroker.cli', run_name='__main__')"
)
