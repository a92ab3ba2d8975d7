"""`logbroker serve --fsync`: the one policy the broker owns is the one that acks and that clients
are told, in every storage mode (regression: the server once kept a second copy of it)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import trio

import logbroker
from tests.cli.conftest import Run, ServeProcess

Serve = Callable[..., ServeProcess]


@pytest.mark.parametrize(
    ("flags", "reported"),
    [
        (("--fsync", "always"), "always"),
        (("--fsync", "interval:20"), "interval:20"),
        (("--fsync", "never"), "never"),
        (("--memory",), "memory"),
    ],
)
def test_serve_acks_a_produce_and_shows_it_under_every_fsync_mode(
    flags: tuple[str, ...], reported: str, serve_process: Serve, run: Run
) -> None:
    server = serve_process(*flags)
    env = {"LOGBROKER_BOOTSTRAP": server.address}
    assert run("topics", "create", "t", env=env).returncode == 0
    produced = run("produce", "t", "--timeout", "5", input="one\ntwo\n", env=env)
    assert produced.returncode == 0, produced.stderr
    consumed = run("consume", "t", "--max-messages", "2", "--idle-timeout", "5", env=env)
    assert consumed.stdout.split() == ["one", "two"]

    async def hello() -> str | None:
        async with await logbroker.connect(server.address) as client:
            return client.broker_info.fsync if client.broker_info else None

    assert trio.run(hello) == reported
    code, _ = server.stop()
    assert code == 0
