"""`carebox demo`: grows with the pipeline. Placeholder until the simulators land."""

from __future__ import annotations


def run_demo(duration: float | None = None) -> int:
    del duration
    print("demo: not available yet")
    return 1
