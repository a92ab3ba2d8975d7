"""`logbroker serve` starting up: listeners first (a port in use names the listener and touches
nothing in the data directory), bad settings as usage errors, storage that is one thing or the
other, defaults in `--help`, a start-up log to read at a glance, a warning for a disk already
below the free-space reserve."""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from logbroker.server.config import Settings, format_value
from tests.cli.conftest import Run, ServeProcess

Serve = Callable[..., ServeProcess]

EiB = 1 << 60


def tree(directory: Path) -> dict[str, tuple[int, int]]:
    """Every path under `directory` with its size and modification time."""
    return {
        str(path.relative_to(directory)): (path.stat().st_size, path.stat().st_mtime_ns)
        for path in directory.rglob("*")
    }


def serve_until_stopped(*args: str, data_dir: Path) -> str:
    """Run `serve` with `args` on free ports, stop it with SIGTERM, and return its log."""
    with ServeProcess(*args, data_dir=data_dir) as process:
        code, log = process.stop()
    assert code == 0, log
    return log


# -- listeners first --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("listener", "flags"), [("native", ("--port",)), ("Kafka", ("--port", "0", "--kafka-port"))]
)
def test_a_port_in_use_exits_1_naming_the_listener_and_creates_no_data_directory(
    listener: str, flags: tuple[str, ...], taken_port: int, run: Run, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    refused = run("serve", *flags, str(taken_port), "--data-dir", str(data))
    assert refused.returncode == 1, refused.stderr
    assert f"Error: {listener} listener 127.0.0.1:{taken_port}: address already in use" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert not data.exists()  # no directory, no .lock, no topics.json, no __offsets


@pytest.mark.parametrize(
    ("listener", "flags"), [("native", ("--port",)), ("Kafka", ("--port", "0", "--kafka-port"))]
)
def test_a_port_in_use_leaves_an_existing_data_directory_as_it_was(
    listener: str, flags: tuple[str, ...], taken_port: int, run: Run, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    serve_until_stopped(data_dir=data)  # a data directory a broker has used, cleanly closed
    before = tree(data)
    assert "__offsets-0" in before and ".lock" in before
    refused = run("serve", *flags, str(taken_port), "--data-dir", str(data))
    assert refused.returncode == 1
    assert f"{listener} listener 127.0.0.1:{taken_port}" in refused.stderr
    assert tree(data) == before  # nothing written, nothing recovered, no clean-shutdown marker replaced


def test_dump_and_verify_read_the_data_directory_of_a_running_broker(serve_process: Serve, run: Run) -> None:
    server = serve_process()
    env = {"LOGBROKER_BOOTSTRAP": server.address}
    assert run("topics", "create", "t", env=env).returncode == 0
    assert run("produce", "t", input="one\ntwo\n", env=env).returncode == 0
    assert server.data_dir is not None
    verified = run("verify", str(server.data_dir))
    assert verified.returncode == 0, verified.stderr
    [segment] = (server.data_dir / "t-0").glob("*.log")
    dumped = run("dump", "--records", "--json", str(segment))
    assert dumped.returncode == 0, dumped.stderr
    assert '"one"' in dumped.stdout and '"two"' in dumped.stdout
    assert server.running and run("topics", "list", env=env).returncode == 0  # the broker is unbothered


# -- bad settings are usage errors ------------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (("--fsync", "bogus"), "fsync must be 'always', 'interval:<ms>' (ms > 0) or 'never', not 'bogus'"),
        (("--fsync", "interval:0"), "not 'interval:0'"),
        (("--port", "70000"), "Invalid value for '--port': 70000 is not in the range 0<=x<=65535"),
        (("--kafka-port", "70000"), "Invalid value for '--kafka-port': 70000 is not in the range"),
        (("--max-connections", "0"), "max_connections must be positive"),
        (("--idle-timeout", "-1"), "idle_timeout must be positive"),
        (("--min-free-bytes", "-1"), "min_free_bytes must not be negative"),
        (("--default-max-deliveries", "0"), "max deliveries must be 1 to 1000, not 0"),
        (
            ("--kafka-min-session-timeout", "60", "--kafka-max-session-timeout", "30"),
            "kafka session timeouts",
        ),
        (("--max-frame-bytes", "lots"), "'lots' is not a valid integer"),
    ],
)
def test_a_bad_serve_flag_is_a_usage_error(
    flags: tuple[str, ...], message: str, run: Run, tmp_path: Path
) -> None:
    refused = run("serve", "--port", "0", "--data-dir", str(tmp_path / "data"), *flags)
    assert refused.returncode == 2, refused.stderr
    assert message in refused.stderr and "Usage: " in refused.stderr
    assert "Traceback" not in refused.stderr
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('port = "9400"', "setting 'port' takes an integer, not '9400'"),
        ("idle_timeout = true", "setting 'idle_timeout' takes a number, not True"),
        ("fsync = 1", "setting 'fsync' takes a string, not 1"),
        ("memory = 1", "setting 'memory' takes true or false, not 1"),
        ('fsync = "bogus"', "fsync must be"),
        ("max_connections = -5", "max_connections must be positive"),
        ("no-such-setting = 1", "unknown setting 'no-such-setting'"),
        ("port = ", "not valid TOML"),
    ],
)
def test_a_bad_value_in_the_config_file_is_a_usage_error_naming_the_file(
    toml: str, message: str, run: Run, tmp_path: Path
) -> None:
    config = tmp_path / "broker.toml"
    config.write_text(toml + "\n")
    refused = run("serve", "--config", str(config), "--port", "0", "--data-dir", str(tmp_path / "data"))
    assert refused.returncode == 2, refused.stderr
    assert f"Error: {config}: " in refused.stderr and message in refused.stderr
    assert "Traceback" not in refused.stderr


# -- memory or a data directory ---------------------------------------------------------------


def test_memory_with_a_data_directory_is_a_usage_error(run: Run, tmp_path: Path) -> None:
    data = tmp_path / "data"
    refused = run("serve", "--memory", "--data-dir", str(data), "--port", "0")
    assert refused.returncode == 2
    assert "memory and data_dir exclude each other" in refused.stderr
    assert not data.exists()
    config = tmp_path / "broker.toml"
    config.write_text(f'memory = true\ndata-dir = "{data}"\n')
    in_the_file = run("serve", "--config", str(config), "--port", "0")
    assert in_the_file.returncode == 2
    assert f"{config}: memory and data_dir exclude each other" in in_the_file.stderr


def test_memory_ignores_the_data_directory_of_the_environment(tmp_path: Path) -> None:
    env = {"LOGBROKER_DATA_DIR": str(tmp_path / "from-env")}
    with ServeProcess(memory=True, env=env) as broker:  # --memory
        code, log = broker.stop()
    assert code == 0
    assert "storage: memory" in log
    config = tmp_path / "broker.toml"
    config.write_text("memory = true\n")
    with ServeProcess("--config", str(config), memory=False, env=env) as broker:  # memory in the file
        code, log = broker.stop()
    assert code == 0
    assert "storage: memory" in log
    assert not (tmp_path / "from-env").exists()


def test_a_flag_chooses_the_storage_over_the_config_file(tmp_path: Path) -> None:
    data = tmp_path / "data"
    config = tmp_path / "broker.toml"
    config.write_text("memory = true\n")
    log = serve_until_stopped("--config", str(config), data_dir=data)  # --data-dir wins
    assert f"storage: files in {data}" in log and (data / ".lock").exists()
    config.write_text(f'data-dir = "{tmp_path / "other"}"\n')
    with ServeProcess("--config", str(config), memory=True) as broker:  # --memory wins
        _, log = broker.stop()
    assert "storage: memory" in log and not (tmp_path / "other").exists()


# -- --help -----------------------------------------------------------------------------------


def help_entries(text: str) -> dict[str, str]:
    """Each option of a `--help` text and its help, whitespace collapsed."""
    entries: dict[str, str] = {}
    current = ""
    for line in text.splitlines():
        start = re.match(r"^  (--[\w-]+)", line)
        if start:
            current = start.group(1)
            entries[current] = ""
        if current:
            entries[current] = " ".join((entries[current] + " " + line).split())
    return entries


def test_help_shows_the_default_of_every_option_as_its_owner_holds_it(run: Run) -> None:
    from logbroker.cli.serve import serve

    shown = run("serve", "--help")
    assert shown.returncode == 0
    entries = help_entries(shown.stdout)
    options = {opt for param in serve.params for opt in param.opts if opt.startswith("--")}
    assert options <= set(entries)
    for option in options:
        assert "[default: " in entries[option], option
    defaults = Settings()
    for name in Settings.names():
        option = "--" + name.replace("_", "-")
        value = defaults.value(name)
        if option in options and value not in ("", -1):
            assert f"[default: {format_value(value)}]" in entries[option], option
    assert "[default: 16777216]" in entries["--max-frame-bytes"]  # 16 MiB, as the README says
    assert "[default: off]" in entries["--kafka-port"] and "[default: always]" in entries["--fsync"]
    assert "[default: on]" in entries["--auto-create-topics"]


# -- the start-up log -------------------------------------------------------------------------


def test_the_startup_log_is_a_short_summary_of_storage_listeners_settings_and_security(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    with ServeProcess("--max-connections", "10", "--idle-timeout", "5", data_dir=data, kafka=True) as broker:
        code, log = broker.stop(signal.SIGINT)
    assert code == 0
    lines = [line.split(": ", 1)[1] for line in log.splitlines() if " INFO logbroker" in line]
    start = lines[: lines.index(f"listening on {broker.address}") + 1]
    assert start[0].startswith("logbroker ") and start[0].endswith(" starting")
    assert f"storage: files in {data} (fsync=always)" in start
    assert f"listeners: native {broker.address}, Kafka {broker.kafka_address}; plain TCP" in start
    assert "settings not at their defaults: max_connections=10 idle_timeout=5" in start
    assert any(line.startswith("security: authentication=off authorization=off") for line in start)
    assert all(len(line) < 160 for line in start), start


def test_the_startup_log_says_when_every_setting_is_at_its_default(tmp_path: Path) -> None:
    log = serve_until_stopped(data_dir=tmp_path / "data")
    assert "settings: all at their defaults" in log


# -- free space -------------------------------------------------------------------------------


def test_a_disk_below_the_free_space_reserve_is_warned_of_at_start(tmp_path: Path, run: Run) -> None:
    data = tmp_path / "data"
    with ServeProcess("--min-free-bytes", str(EiB), data_dir=data) as broker:
        env = {"LOGBROKER_BOOTSTRAP": broker.address}
        assert run("topics", "create", "t", env=env).returncode == 0  # the reserve takes metadata
        refused = run("produce", "t", "--timeout", "2", input="x\n", env=env)
        _, log = broker.stop()
    [warning] = [line for line in log.splitlines() if "kept for commits and metadata" in line]
    free = os.statvfs(data).f_bavail * os.statvfs(data).f_frsize
    assert " WARNING " in warning
    assert f"free on the disk of {data}, less than the 1 EiB kept" in warning
    assert "every produce is refused" in warning
    assert free < EiB
    assert refused.returncode == 1 and "no space left for records" in refused.stderr  # as it said


def test_no_free_space_warning_when_the_disk_has_room(tmp_path: Path) -> None:
    log = serve_until_stopped("--min-free-bytes", "1", data_dir=tmp_path / "data")
    assert "kept for commits and metadata" not in log
