"""Failpoints (fast tier): the broker stopped at each named point of a multi-step operation is,
after a power loss and a restart, as before the operation or as after it. The long tier:
`python tools/reliability.py failpoints`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from logbroker import failpoints
from logbroker.testing import ServeProcess
from tools.campaigns.failpoints import State, _compare, run_failpoints


def test_every_failpoint_leaves_the_state_before_or_after() -> None:
    result = run_failpoints(rounds=2, seed=3)
    print(result.summary())
    assert result.ok, result.summary()
    assert result.crashed == result.cases == 2 * len(failpoints.POINTS)


def test_the_comparison_sees_a_mix() -> None:
    before = State({"t": [(0, [(0, b"a"), (1, b"b")])]}, {("g", 0): 1})
    assert _compare("p", before, before, {"t"}) == []
    moved_back = State({"t": [(0, [(0, b"a"), (1, b"b")])]}, {("g", 0): 1})
    later = State({"t": [(1, [(1, b"b")])]}, {("g", 0): 1})
    assert _compare("p", later, moved_back, {"t"})  # the log start went from 1 back to 0
    assert _compare("p", before, State({"t": [(0, [(0, b"a"), (1, b"x")])]}, {("g", 0): 1}), {"t"})
    assert _compare("p", before, State({"t": [(0, [(0, b"a")])]}, {("g", 0): 1}), {"t"})  # lost
    assert _compare("p", before, State({}, {}), {"t"})  # a topic gone that should not be
    assert _compare("p", before, State({"t": [(0, [(0, b"a"), (1, b"b")])]}, {("g", 0): 0}), {"t"})


def test_an_armed_failpoint_ends_a_broker_process(tmp_path: Path) -> None:
    # LOGBROKER_FAILPOINTS arms a point in a `logbroker serve` subprocess: it exits with 137 there,
    # and the next start finishes the topic creation's undoing. (The first time the process passes
    # the point is when it creates `__offsets` at its first start, hence @2.)
    data = tmp_path / "data"
    env = {"LOGBROKER_FAILPOINTS": "topic.create.after_partitions@2:exit"}
    with ServeProcess(data_dir=data, env=env) as broker:
        created = subprocess.run(
            [
                sys.executable,
                "-m",
                "logbroker.cli",
                "topics",
                "create",
                "doomed",
                "--partitions",
                "2",
                "--bootstrap",
                broker.address,
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert broker.wait(timeout=30) == 137
    assert created.returncode != 0
    assert (data / "doomed-0").exists()  # the half-made topic's directories
    listed = subprocess.run(
        [
            sys.executable,
            "-c",
            "from logbroker.broker.broker import Broker; "
            f"b = Broker.open({str(data)!r}, now_ms=0); print([t.name for t in b.list_topics()]); b.close()",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert listed.stdout.strip() == "[]"
    assert not (data / "doomed-0").exists()  # removed as leftovers of a topic the catalogue lacks


@pytest.mark.parametrize("bad", ["nosuch", "append.after_write:explode"])
def test_arming_a_failpoint_checks_its_name_and_action(bad: str) -> None:
    name, _, action = bad.partition(":")
    with pytest.raises(ValueError):
        failpoints.arm(name, action=action or "raise")
