"""Structured one-line logs; no health value at INFO or above."""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from device_drivers.errors import MalformedValue
from device_drivers.reading import Reading
from gateway.logs import REDACTED, configure_logging


@pytest.fixture
def captured() -> Iterator[tuple[io.StringIO, logging.Logger]]:
    stream = io.StringIO()
    root = logging.getLogger()
    level = root.level
    configure_logging(logging.DEBUG, stream=stream, env={})
    yield stream, logging.getLogger("gateway.test")
    for handler in root.handlers[:]:
        if handler.get_name() == "carebox.stdout":
            root.removeHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(False)


def lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


def test_one_logfmt_line_per_record(captured: tuple[io.StringIO, logging.Logger]) -> None:
    stream, log = captured
    log.info("uplink connected", extra={"broker": "broker.example.org:8883", "queue_depth": 3})
    log.warning('odd "name"\nsecond line', extra={"device": "C0:FF:EE:00:00:01"})
    assert lines(stream) == [
        'level=info logger=gateway.test msg="uplink connected" '
        "broker=broker.example.org:8883 queue_depth=3",
        r'level=warning logger=gateway.test msg="odd \"name\"\nsecond line" '
        "device=C0:FF:EE:00:00:01",
    ]


def test_tracebacks_stay_on_one_line(captured: tuple[io.StringIO, logging.Logger]) -> None:
    stream, log = captured
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        log.exception("session failed", extra={"device": "C0:FF:EE:00:00:01"})
    (line,) = lines(stream)
    assert line.startswith('level=error logger=gateway.test msg="session failed" device=')
    assert "exc_type=RuntimeError" in line
    assert 'exc="Traceback (most recent call last):\\n' in line


def test_health_fields_are_redacted_at_info_and_above(
    captured: tuple[io.StringIO, logging.Logger],
) -> None:
    stream, log = captured
    log.info("measured", extra={"systolic": 128, "weight": 71.5, "device": "C0:FF:EE:00:00:01"})
    log.error("bad bytes", extra={"hex": "1e80000500", "characteristic": "2A35"})
    log.debug("measured", extra={"systolic": 128})
    info, error, debug = lines(stream)
    assert info == (
        "level=info logger=gateway.test msg=measured "
        f"systolic={REDACTED} weight={REDACTED} device=C0:FF:EE:00:00:01"
    )
    assert "1e80000500" not in error
    assert f"hex={REDACTED}" in error
    assert "systolic=128" in debug  # DEBUG keeps it; the unit's LogLevelMax=info drops it


def test_device_values_in_arguments_are_redacted(
    captured: tuple[io.StringIO, logging.Logger],
) -> None:
    stream, log = captured
    reading = Reading(
        device="C0:FF:EE:00:00:01",
        characteristic=0x2A35,
        value=b"\x1e\x80\x00\x50\x00",
        received_at=datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC),
        clock_trusted=True,
    )
    log.info("got %s from %s", reading, "C0:FF:EE:00:00:01")
    log.info("raw %r", b"\x1e\x80")
    log.info("named %(systolic)s %(device)s", {"systolic": 128, "device": "cuff"})
    first, second, third = lines(stream)
    assert first == f'level=info logger=gateway.test msg="got {REDACTED} from C0:FF:EE:00:00:01"'
    assert second == f'level=info logger=gateway.test msg="raw {REDACTED}"'
    assert third == f'level=info logger=gateway.test msg="named {REDACTED} cuff"'


def test_hex_in_exception_messages_is_scrubbed(
    captured: tuple[io.StringIO, logging.Logger],
) -> None:
    stream, log = captured
    error = MalformedValue(0x2A35, b"\x1e\x80\x00\x50", 3, "truncated")
    try:
        raise error
    except MalformedValue as exc:
        log.warning("decode failed: %s", exc, exc_info=True)
    (line,) = lines(stream)
    assert "1e800050" not in line
    assert f"hex {REDACTED}" in line
    assert "malformed 2A35 value at offset 3" in line


def test_journal_stream_gets_syslog_priorities(tmp_path: object) -> None:
    with open(os.devnull, "w") as devnull:
        st = os.fstat(devnull.fileno())
        env = {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
        root = logging.getLogger()
        try:
            configure_logging(stream=devnull, env=env)  # type: ignore[arg-type]
            (handler,) = [h for h in root.handlers if h.get_name() == "carebox.stdout"]
            record = logging.LogRecord("x", logging.WARNING, "", 0, "careful", None, None)
            assert handler.format(record) == "<4>level=warning logger=x msg=careful"
            configure_logging(stream=devnull, env={})  # replaces, never doubles
            (handler,) = [h for h in root.handlers if h.get_name() == "carebox.stdout"]
            assert handler.format(record) == "level=warning logger=x msg=careful"
        finally:
            for handler in root.handlers[:]:
                if handler.get_name() == "carebox.stdout":
                    root.removeHandler(handler)
            logging.captureWarnings(False)
