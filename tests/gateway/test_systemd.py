"""sd_notify over a real AF_UNIX datagram socket, and the heartbeat-gated watchdog."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.systemd import Notifier, Watchdog

RECEIVE_TIMEOUT_S = 5.0  # generous: a loaded CI machine; the datagrams are local


@pytest.fixture
def manager(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    """A stand-in for systemd's notify socket."""
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        sock.settimeout(RECEIVE_TIMEOUT_S)
        yield sock, path


def received(sock: socket.socket) -> list[str]:
    return sock.recv(4096).decode().split("\n")


def pending(sock: socket.socket) -> int:
    count = 0
    sock.setblocking(False)
    try:
        while True:
            sock.recv(4096)
            count += 1
    except BlockingIOError:
        return count
    finally:
        sock.settimeout(RECEIVE_TIMEOUT_S)


def test_messages_reach_the_manager(manager: tuple[socket.socket, str]) -> None:
    sock, path = manager
    notifier = Notifier({"NOTIFY_SOCKET": path})
    assert notifier.enabled
    assert notifier.ready("started\nqueue 3")
    assert received(sock) == ["READY=1", "STATUS=started queue 3"]
    assert notifier.status("uplink connected")
    assert received(sock) == ["STATUS=uplink connected"]
    assert notifier.watchdog()
    assert received(sock) == ["WATCHDOG=1"]
    assert notifier.stopping("flushing")
    assert received(sock) == ["STOPPING=1", "STATUS=flushing"]


def test_abstract_socket_address() -> None:
    name = f"carebox-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(RECEIVE_TIMEOUT_S)
        assert Notifier({"NOTIFY_SOCKET": "@" + name}).ready()
        assert received(sock) == ["READY=1"]


def test_without_systemd_everything_is_a_no_op(tmp_path: Path) -> None:
    notifier = Notifier({})
    assert not notifier.enabled
    assert not notifier.ready()
    assert notifier.watchdog_interval_s is None
    assert not Notifier({"NOTIFY_SOCKET": "relative/path"}).enabled


def test_a_dead_socket_is_reported_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone")})
    assert not notifier.ready()
    assert "sd_notify failed" in caplog.text


@pytest.mark.parametrize(
    ("env", "interval"),
    [
        ({"WATCHDOG_USEC": "120000000"}, 120.0),
        ({"WATCHDOG_USEC": "120000000", "WATCHDOG_PID": str(os.getpid())}, 120.0),
        ({"WATCHDOG_USEC": "120000000", "WATCHDOG_PID": "1"}, None),  # meant for another process
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval_from_the_environment(
    env: dict[str, str], interval: float | None
) -> None:
    assert Notifier({"NOTIFY_SOCKET": "/x", **env}).watchdog_interval_s == interval


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_pets_only_while_every_heartbeat_is_fresh(manager: tuple[socket.socket, str]) -> None:
    sock, path = manager
    clock = FakeClock()
    watchdog = Watchdog(Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "60000000"}), clock=clock)
    assert watchdog.enabled
    uplink = watchdog.register("carebox.uplink", max_silence_s=30)
    ble = watchdog.register("carebox.ble", max_silence_s=90)
    assert watchdog.pet()
    assert received(sock) == ["WATCHDOG=1"]

    clock.now += 31  # the uplink loop missed its promise
    assert watchdog.stale() == ["carebox.uplink"]
    assert not watchdog.pet()
    assert pending(sock) == 0

    uplink.beat(clock.now)
    assert watchdog.pet()
    assert received(sock) == ["WATCHDOG=1"]

    clock.now += 100
    assert watchdog.stale() == ["carebox.ble", "carebox.uplink"]
    ble.unregister()
    with uplink:
        uplink.beat(clock.now)
        assert watchdog.pet()
    # a loop that ended properly no longer holds the watchdog back
    clock.now += 1000
    assert watchdog.stale() == []
    assert watchdog.pet()
    assert pending(sock) == 2


def test_register_refuses_duplicates_and_nonsense() -> None:
    watchdog = Watchdog(Notifier({}))
    watchdog.register("a", 1)
    with pytest.raises(ValueError, match="already registered"):
        watchdog.register("a", 1)
    with pytest.raises(ValueError, match="positive"):
        watchdog.register("b", 0)


async def test_run_pets_periodically_until_a_loop_stalls(
    manager: tuple[socket.socket, str],
) -> None:
    sock, path = manager
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    clock = FakeClock()
    # 20 ms watchdog: pets every 10 ms
    watchdog = Watchdog(Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "20000"}), clock=clock)
    heartbeat = watchdog.register("carebox.uplink", max_silence_s=5)
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(watchdog.run())
        async with asyncio.timeout(RECEIVE_TIMEOUT_S):
            for _ in range(3):
                assert await loop.sock_recv(sock, 4096) == b"WATCHDOG=1"
        clock.now += 10  # stalled: the next pets are withheld
        await asyncio.sleep(0.05)
        while pending(sock):  # drain what was sent before the stall was seen
            pass
        sock.setblocking(False)
        await asyncio.sleep(0.05)
        assert pending(sock) == 0
        heartbeat.beat(clock.now)
        sock.setblocking(False)
        async with asyncio.timeout(RECEIVE_TIMEOUT_S):
            assert await loop.sock_recv(sock, 4096) == b"WATCHDOG=1"
        task.cancel()


async def test_run_returns_at_once_without_a_watchdog() -> None:
    async with asyncio.timeout(RECEIVE_TIMEOUT_S):
        await Watchdog(Notifier({"NOTIFY_SOCKET": "/x"})).run()
