"""`carebox decode` as the contract has it: JSON on stdout, or exit 2 with a one-line error on
malformed input; usage errors are one line too."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def carebox(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_value_decodes_to_json() -> None:
    done = carebox("decode", "2A35", "00 7800 5000 6400")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "unit": "mmHg",
        "systolic": 120,
        "diastolic": 80,
        "mean_arterial_pressure": 100,
    }


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("decode", "2A35", "0600"), "systolic needs 2 octet(s)"),
        (("decode", "2A35", "0g"), "HEX is not an even number of hex digits"),
        (("decode", "2A3", "00"), "CHAR must be 4 hex digits"),
        (("decode", "2AFF", "00"), "no decoder for characteristic 2AFF"),
        (("decode", "2A35"), "the following arguments are required: HEX"),
        (("decode",), "the following arguments are required: CHAR, HEX"),
        (("bogus",), "invalid choice: 'bogus'"),
    ],
)
def test_bad_input_is_exit_2_and_one_line(args: tuple[str, ...], expected: str) -> None:
    done = carebox(*args)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1, done.stderr
    assert expected in done.stderr
    assert "Traceback" not in done.stderr
