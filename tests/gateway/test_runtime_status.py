"""The service's status file is believed only while the process that wrote it lives: a
service killed with SIGKILL leaves its file, and `carebox status` must not call it running."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.config import Config, load_config
from gateway.service import _process_identity, read_runtime_status, runtime_dir

CONFIG = 'gateway_id = "cbx-test"\nstate_dir = "{state}"\n[upstream]\nurl = "mqtts://b.example"\n'


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Config:
    monkeypatch.delenv("RUNTIME_DIRECTORY", raising=False)
    path = tmp_path / "carebox.toml"
    path.write_text(CONFIG.format(state=tmp_path / "state"))
    return load_config(path, env={"TZ": "UTC"})


def _write(config: Config, pid: int, process: object) -> None:
    path = runtime_dir(config) / "status.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"pid": pid, "process": process, "clock_trusted": True}))


def test_the_file_of_a_live_service_is_read(config: Config) -> None:
    identity = _process_identity(os.getpid())
    assert identity is not None
    _write(config, os.getpid(), list(identity))
    doc = read_runtime_status(config)
    assert doc is not None
    assert doc["clock_trusted"] is True


def test_the_file_of_a_process_that_is_gone_is_not(config: Config) -> None:
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    pid = int(gone.stdout)
    _write(config, pid, ["whatever-boot", 1])
    assert read_runtime_status(config) is None


def test_a_pid_now_used_by_another_process_is_not_the_service(config: Config) -> None:
    identity = _process_identity(os.getpid())
    assert identity is not None
    boot, start = identity
    _write(config, os.getpid(), [boot, start + 1])  # same pid, another start: reused
    assert read_runtime_status(config) is None
    _write(config, os.getpid(), ["another-boot", start])  # the file outlived a reboot
    assert read_runtime_status(config) is None


def test_a_file_without_the_process_identity_is_not_believed(config: Config) -> None:
    _write(config, os.getpid(), None)
    assert read_runtime_status(config) is None
