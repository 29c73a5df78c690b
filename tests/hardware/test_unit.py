"""The systemd unit (systemd-analyze), install.sh (bash -n, shellcheck, an idempotent --root
install run twice) and the config skeleton it installs."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.config import ConfigError, load_config

REPO = Path(__file__).resolve().parents[2]
HARDWARE = REPO / "hardware"
UNIT = HARDWARE / "systemd" / "carebox.service"
INSTALL = HARDWARE / "install.sh"
SYSTEM_UNITS = Path("/usr/lib/systemd/system")
TOOL_TIMEOUT_S = 120  # apt-get may have to fetch a package on a fresh machine


def ensure_tool(command: str, package: str) -> str:
    """The tool's path, installing Debian's package when it is missing (CI runs as root)."""
    found = shutil.which(command)
    if found is None:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=True, timeout=TOOL_TIMEOUT_S, env=env)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", package],
            check=True,
            timeout=TOOL_TIMEOUT_S,
            env=env,
        )
        found = shutil.which(command)
    assert found is not None, f"{command} is still missing after installing {package}"
    return found


def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = ensure_tool("systemd-analyze", "systemd")
    # verify checks that ExecStart= exists, so it runs against a root holding the system's
    # units and a stand-in for the installed console script.
    shutil.copytree(SYSTEM_UNITS, tmp_path / SYSTEM_UNITS.relative_to("/"), symlinks=True)
    script = tmp_path / "opt/carebox/venv/bin/carebox"
    script.parent.mkdir(parents=True)
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    (tmp_path / "etc/systemd/system").mkdir(parents=True)
    shutil.copy(UNIT, tmp_path / "etc/systemd/system/carebox.service")
    result = subprocess.run(
        [analyze, "verify", f"--root={tmp_path}", "carebox.service"],
        capture_output=True,
        text=True,
        timeout=TOOL_TIMEOUT_S,
        check=False,
    )
    # verify exits 0 on warnings such as an unknown key: clean means no output at all.
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_verify_would_catch_a_broken_unit(tmp_path: Path) -> None:
    analyze = ensure_tool("systemd-analyze", "systemd")
    broken = tmp_path / "carebox.service"
    broken.write_text(UNIT.read_text().replace("Type=notify", "Type=notifyy"))
    result = subprocess.run(
        [analyze, "verify", str(broken)], capture_output=True, text=True, check=False
    )
    assert "Failed to parse service type" in result.stderr


def test_security_analysis_keeps_the_sandbox(tmp_path: Path) -> None:
    analyze = ensure_tool("systemd-analyze", "systemd")
    result = subprocess.run(
        [analyze, "security", "--offline=true", "--no-pager", str(UNIT)],
        capture_output=True,
        text=True,
        timeout=TOOL_TIMEOUT_S,
        check=False,
    )
    report = result.stdout
    exposure = float(report.split("Overall exposure level for carebox.service:")[1].split()[0])
    assert exposure <= 2.0, report
    for line in (
        "✓ CapabilityBoundingSet=~CAP_SYS_ADMIN",
        "✓ ProtectSystem=",
        "✓ MemoryDenyWriteExecute=",
        "✓ RestrictAddressFamilies=~AF_NETLINK",
        "✓ PrivateDevices=",
        # adjtimex must stay allowed (clock trust): the order of SystemCallFilter= lines matters
        "✗ SystemCallFilter=~@clock",
    ):
        assert any(row.startswith(line) for row in report.splitlines()), line
    assert "adjtimex is allowed" in report


def test_unit_content() -> None:
    text = UNIT.read_text()
    for directive in (
        "Type=notify",
        "NotifyAccess=main",
        "WatchdogSec=",
        "Restart=always",
        "User=carebox",
        "StateDirectory=carebox",
        "StateDirectoryMode=0700",
        "ExecStart=/opt/carebox/venv/bin/carebox run",
        "CapabilityBoundingSet=\n",
        "LogLevelMax=info",
    ):
        assert directive in text, directive
    directives = [line for line in text.splitlines() if not line.startswith("#")]
    assert not any("time-sync.target" in line for line in directives)  # LESSONS L7.5


def test_python_stack_runs_with_memory_deny_write_execute() -> None:
    """MemoryDenyWriteExecute=yes, tried with the kernel's own switch (PR_SET_MDWE)."""
    code = """
import ctypes, mmap, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(65, 1, 0, 0, 0) != 0:  # PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN
    sys.exit(f"PR_SET_MDWE failed, errno {ctypes.get_errno()}")
try:
    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    sys.exit("a writable executable mapping was allowed: MDWE is not in force")
except OSError:
    pass
import aiosqlite, bleak, dbus_fast, paho.mqtt.client
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
AESGCM(AESGCM.generate_key(bit_length=256)).encrypt(b"0" * 12, b"x", None)
ec.generate_private_key(ec.SECP256R1())
import gateway.cli, gateway.clock, gateway.config, gateway.logs, gateway.systemd
assert gateway.clock.kernel_clock() is not None
print("ok")
"""
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, cwd=REPO
    )
    assert (result.returncode, result.stdout.strip()) == (0, "ok"), result.stderr


def test_install_script_is_clean_shell() -> None:
    subprocess.run(["bash", "-n", str(INSTALL)], check=True)
    shellcheck = ensure_tool("shellcheck", "shellcheck")
    result = subprocess.run([shellcheck, str(INSTALL)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout


def install(root: Path) -> list[str]:
    result = subprocess.run(
        ["bash", str(INSTALL), "--root", str(root)],
        capture_output=True,
        text=True,
        timeout=TOOL_TIMEOUT_S,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_install_under_a_root_is_idempotent(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc/bluetooth").mkdir(parents=True)
    (root / "etc/bluetooth/main.conf").write_text("# the distribution's file\n")
    first = install(root)
    assert "carebox-install: installed /etc/systemd/system/carebox.service" in first
    assert any("would run: useradd --system" in line for line in first)
    assert any(line.endswith(f"pip install --quiet --upgrade {REPO}") for line in first)
    unit = root / "etc/systemd/system/carebox.service"
    assert unit.read_text() == UNIT.read_text()
    wants = root / "etc/systemd/system/multi-user.target.wants/carebox.service"
    assert os.readlink(wants) == "/etc/systemd/system/carebox.service"
    config = root / "etc/carebox/carebox.toml"
    assert (mode(config), mode(config.parent)) == (0o640, 0o750)
    bluez = root / "etc/bluetooth/main.conf"
    assert bluez.read_text() == (HARDWARE / "bluez/main.conf").read_text()
    assert (root / "etc/bluetooth/main.conf.carebox-orig").read_text() == (
        "# the distribution's file\n"
    )
    assert not (root / "etc/systemd/system/carebox.service.d").exists()

    # The technician's config is never overwritten; a second run changes nothing else.
    config.write_text(config.read_text() + '\n# edited\n[store]\nkey_provider = "rpi-otp"\n')
    edited = config.read_text()
    second = install(root)
    assert config.read_text() == edited
    assert "carebox-install: unchanged /etc/carebox/carebox.toml (kept as it is)" in second
    assert "carebox-install: unchanged /etc/systemd/system/carebox.service" in second
    assert "carebox-install: unchanged /etc/bluetooth/main.conf" in second
    assert (root / "etc/bluetooth/main.conf.carebox-orig").read_text() == (
        "# the distribution's file\n"
    )
    # ...except the drop-in that the new key provider needs.
    dropin = root / "etc/systemd/system/carebox.service.d/rpi-otp.conf"
    assert "DeviceAllow=/dev/vcio rw" in dropin.read_text()
    third = install(root)
    assert not any(line.startswith("carebox-install: installed") for line in third), third


def test_config_skeleton_needs_only_the_url(tmp_path: Path) -> None:
    skeleton = (HARDWARE / "carebox.toml").read_text()
    path = tmp_path / "carebox.toml"
    path.write_text(skeleton)
    with pytest.raises(ConfigError, match=r"\[upstream\] url is required"):
        load_config(path)
    path.write_text(
        'gateway_id = "cbx-test"\n'
        + skeleton.replace("# url = ", "url = ").replace(
            '"mqtts://broker.example.org:8883"   #', '"mqtts://b.example" #'
        )
    )
    config = load_config(path)
    assert config.upstream.host == "b.example"
    assert (config.store.key_provider, config.clock.source) == ("file", "auto")
