"""Fuzzing (fast tier): each atheris target of `tools/fuzz.py` runs a fixed number of inputs,
starting from the seed corpus recorded from real clients (`tools/record_corpus.py`); only the
protocols' own errors may come out. The long tier: `python tools/fuzz.py TARGET
-max_total_time=3600`. Crashes found become tests here."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RUNS = {"native": 10_000, "kafka": 10_000, "batches": 30_000}


@pytest.mark.parametrize("target", sorted(RUNS))
def test_fuzzing_finds_no_crash(target: str, tmp_path: Path) -> None:
    assert any((ROOT / "tests" / "fixtures" / "fuzz" / target).iterdir())  # seeds from real clients
    done = subprocess.run(
        [
            sys.executable,
            "tools/fuzz.py",
            target,
            f"-runs={RUNS[target]}",
            "-seed=1",
            str(tmp_path),
            str(ROOT / "tests" / "fixtures" / "fuzz" / target),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"Done {RUNS[target]} runs" in done.stderr


def test_the_harness_lets_other_errors_through(monkeypatch: pytest.MonkeyPatch) -> None:
    # A target that swallowed every exception could never find a crash.
    sys.path.insert(0, str(ROOT / "tools"))
    import fuzz

    def broken(data: bytes) -> list[object]:
        raise RuntimeError("a defect")

    monkeypatch.setattr(fuzz, "validate_batches", broken)
    with pytest.raises(RuntimeError):
        fuzz.batches(b"\x00" * 70)
