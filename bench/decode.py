"""Decodes per second through `device_drivers.decode`, beside the raw limit of the same run:
`struct.unpack` of the same bytes' fixed fields (what a hand-written, unchecked parser does).

Usage: .venv/bin/python bench/decode.py   (last line: one JSON object)
"""

from __future__ import annotations

import json
import struct
import time

from device_drivers import decode, to_json

# Typical values of each measurement characteristic (flags with timestamp and common fields).
SAMPLES: list[tuple[int, bytes]] = [
    (0x2A35, bytes.fromhex("1e780050006400ea070b1c0f1e004800010000")),  # BP + pulse, user, status
    (0x2A18, bytes.fromhex("030100ea070b1c0f1e0000005fb011")),  # glucose 95 mg/dL as kg/L
    (0x2A9D, bytes.fromhex("02b036ea070b1c0f1e00")),  # 70.000 kg with a timestamp
    (0x2A2B, bytes.fromhex("ea070b1c0f1e00068000")),  # current time
]
ROUNDS = 20_000


def _rate(fn: object, rounds: int) -> float:
    assert callable(fn)
    start = time.perf_counter()
    for _ in range(rounds):
        fn()
    return rounds * len(SAMPLES) / (time.perf_counter() - start)


def main() -> None:
    def through_codecs() -> None:
        for uuid, data in SAMPLES:
            decode(uuid, data)

    def through_json() -> None:
        for uuid, data in SAMPLES:
            to_json(decode(uuid, data))

    unpackers = [struct.Struct("<B" + "H" * ((len(d) - 1) // 2)) for _, d in SAMPLES]

    def raw_struct() -> None:
        for (_, data), s in zip(SAMPLES, unpackers, strict=True):
            s.unpack_from(data)

    through_codecs()  # warm caches and imports
    decodes = _rate(through_codecs, ROUNDS)
    decodes_json = _rate(through_json, ROUNDS // 4)
    raw = _rate(raw_struct, ROUNDS)
    print(
        json.dumps(
            {
                "bench": "decode",
                "decodes_per_s": round(decodes),
                "decode_to_json_per_s": round(decodes_json),
                "raw_struct_unpack_per_s": round(raw),
                "decode_ratio": round(decodes / raw, 4),
            }
        )
    )


if __name__ == "__main__":
    main()
