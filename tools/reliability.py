"""Reliability campaigns, long tier: the same campaigns CI runs in `tests/reliability/`, longer.

    python tools/reliability.py kill9 [--kills 200] [--seed 1] [--fsync always]
    python tools/reliability.py power-loss [--rounds 200] [--seed 1] [--fsync always]
    python tools/reliability.py disk-full [--size 64m] [--min-free-bytes 1048576]
    python tools/reliability.py io-errors [--rounds 20]
    python tools/reliability.py abuse [--idle 3000] [--slowloris 500] [--churn 10000]
    python tools/reliability.py failpoints [--rounds 1000]

kill9: a `logbroker serve` subprocess killed with SIGKILL at random moments under produce and
group-consume load, restarted each time, then the history check (see `tools/campaigns/`). It
prints a progress line per kill and the verdict; exits 1 on any violation. The broker's log and
data are kept in a temporary directory that is named at the end when a violation was found.

power-loss: the server in-process on the fault-injecting file system; the power goes at random
moments (half of them tearing unsynced tails), the broker recovers, and each round is checked
against the promise of the `--fsync` mode (see `tools/campaigns/power_loss.py`).

disk-full (root: it mounts a tmpfs) and io-errors: see `tools/campaigns/disk_full.py`; abuse:
`tools/campaigns/abuse.py`; failpoints: `tools/campaigns/failpoints.py`.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tools.campaigns.abuse import AbuseResult, run_abuse
from tools.campaigns.disk_full import DiskFullResult, IoErrorsResult, run_disk_full, run_io_errors
from tools.campaigns.failpoints import FailpointsResult, run_failpoints
from tools.campaigns.kill9 import Kill9Result, run_kill9
from tools.campaigns.power_loss import PowerLossResult, run_power_loss


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="campaign", required=True)
    kill9 = commands.add_parser("kill9", help="kill -9 under load, then the history check")
    kill9.add_argument("--kills", type=int, default=200)
    kill9.add_argument("--producers", type=int, default=3)
    power = commands.add_parser("power-loss", help="simulated power loss, then the history check")
    power.add_argument("--rounds", type=int, default=200)
    power.add_argument("--partitions", type=int, default=2)
    for command in (kill9, power):
        command.add_argument("--seed", type=int, default=1)
        command.add_argument("--fsync", default="always", help="always, interval:<ms> or never")
    full = commands.add_parser("disk-full", help="fill a tmpfs data directory (needs root)")
    full.add_argument("--size", default="64m", help="the tmpfs size, as mount takes it")
    full.add_argument("--min-free-bytes", type=int, default=1 << 20, help="the broker's reserve")
    errors = commands.add_parser("io-errors", help="the N-th write, fsync or rename fails, for every N")
    errors.add_argument("--rounds", type=int, default=20, help="workloads, each with every N of every op")
    errors.add_argument("--seed", type=int, default=1)
    abuse = commands.add_parser("abuse", help="idle, slowloris, churn and reset connections")
    abuse.add_argument("--idle", type=int, default=3000)
    abuse.add_argument("--slowloris", type=int, default=500)
    abuse.add_argument("--churn", type=int, default=10000)
    abuse.add_argument("--resets", type=int, default=2000)
    abuse.add_argument("--max-connections", type=int, default=4000)
    abuse.add_argument("--rounds", type=int, default=3, help="rounds of abuse (memory must not grow)")
    points = commands.add_parser("failpoints", help="stop at every named failpoint, restart, compare")
    points.add_argument("--rounds", type=int, default=1000)
    points.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    logging.getLogger("logbroker").setLevel(logging.CRITICAL)  # the faults make the broker complain
    started = time.monotonic()

    def progress(line: str) -> None:
        print(f"[{time.monotonic() - started:7.1f} s] {line}", flush=True)

    work: Path | None = None
    if args.campaign == "disk-full":
        mount_under = Path(tempfile.mkdtemp(prefix="logbroker-disk-full-"))
        result: (
            Kill9Result | PowerLossResult | DiskFullResult | IoErrorsResult | AbuseResult | FailpointsResult
        ) = trio.run(
            lambda: run_disk_full(
                mount_under, size=args.size, min_free_bytes=args.min_free_bytes, log=progress
            )
        )
        shutil.rmtree(mount_under, ignore_errors=True)
    elif args.campaign == "failpoints":
        result = run_failpoints(rounds=args.rounds, seed=args.seed)
    elif args.campaign == "abuse":
        result = trio.run(
            lambda: run_abuse(
                idle=args.idle,
                slowloris=args.slowloris,
                churn=args.churn,
                resets=args.resets,
                max_connections=args.max_connections,
                rounds=args.rounds,
            )
        )
    elif args.campaign == "io-errors":
        result = trio.run(lambda: run_io_errors(rounds=args.rounds, seed=args.seed))
    elif args.campaign == "kill9":
        work = Path(tempfile.mkdtemp(prefix="logbroker-kill9-"))
        result = trio.run(
            lambda: run_kill9(
                work,
                kills=args.kills,
                seed=args.seed,
                producers=args.producers,
                fsync=args.fsync,
                log=progress,
            )
        )
    else:
        result = trio.run(
            lambda: run_power_loss(
                rounds=args.rounds, seed=args.seed, fsync=args.fsync, partitions=args.partitions, log=progress
            )
        )
    settings = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k != "campaign")
    print(f"{args.campaign} {settings}: {result.summary()} ({time.monotonic() - started:.0f} s)")
    if result.ok:
        if work is not None:
            shutil.rmtree(work, ignore_errors=True)
        print("PASS")
    else:
        print("FAIL" + (f": the broker's data and log are kept in {work}" if work is not None else ""))
        sys.exit(1)


if __name__ == "__main__":
    main()
