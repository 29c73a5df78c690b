"""`make demo`'s job, end to end: the demo's own verdict is counted at the broker."""

from __future__ import annotations

import re
import subprocess
import sys

DEMO_TIMEOUT_S = 240  # the scenario completes in about 25 s; a loaded CI machine is slower


def test_demo_loses_nothing_through_its_outage() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "demo", "--duration", "150"],
        capture_output=True,
        text=True,
        timeout=DEMO_TIMEOUT_S,
        check=False,
    )
    lines = done.stdout.strip().splitlines()
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    last = re.fullmatch(r"demo: produced (\d+), delivered (\d+), lost 0, duplicates 0", lines[-1])
    assert last, lines[-1]
    # 8 cuff readings, 60 stored glucose records and 6 weighings: the whole scenario ran.
    assert int(last[1]) == int(last[2]) == 74
    assert any("broker stopped (outage begins)" in line for line in lines)
    assert any("broker back (outage over)" in line for line in lines)
    assert any("was never connected" in line for line in lines)
