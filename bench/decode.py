"""Decodes per second through `device_drivers.decode`, beside the raw limit of the same run:
`struct.unpack` of the same bytes' fixed fields (what a hand-written, unchecked parser does).

Usage: .venv/bin/python bench/decode.py   (last line: one JSON object)
"""

from __future__ import annotations

import json
import struct
import time

from device_drivers import codec_for, to_json

ROUNDS = 5  # passes over the samples
N_SAMPLES = 8_000  # per characteristic: more than the decode cache holds, so nothing repeats


def _stamp(n: int) -> bytes:
    return struct.pack("<HBBBBB", 2026, 1 + n % 12, 1 + n % 28, n % 24, n % 60, (n // 60) % 60)


def _samples() -> list[tuple[int, bytes]]:
    """Distinct, plausible values: pressures, pulses, glucose and weights vary as a patient's
    do, timestamps never repeat, so the numbers are the decoder's, not a cache's."""
    out: list[tuple[int, bytes]] = []
    for n in range(N_SAMPLES):
        sys_, dia, pulse = 95 + n % 90, 55 + n % 50, 45 + n % 80
        out.append(
            (
                0x2A35,
                bytes([0x1E])
                + struct.pack("<HHH", sys_, dia, (sys_ + 2 * dia) // 3)
                + _stamp(n)
                + struct.pack("<HBH", pulse, 1, n % 64),
            )
        )
        mantissa = 50 + n % 400  # 50..449 mg/dL as kg/L: mantissa x 10^-5
        out.append(
            (
                0x2A18,
                bytes([0x03])
                + struct.pack("<H", n)
                + _stamp(n)
                + struct.pack("<hH", 0, 0xB000 | mantissa)
                + bytes([0x11]),
            )
        )
        out.append((0x2A9D, bytes([0x02]) + struct.pack("<H", 9000 + n % 9000) + _stamp(n)))
        out.append((0x2A2B, _stamp(n) + bytes([1 + n % 7, n % 256, 0])))
    return out


SAMPLES = _samples()


def _rate(fn: object, rounds: int) -> float:
    assert callable(fn)
    start = time.perf_counter()
    for _ in range(rounds):
        fn()
    return rounds * len(SAMPLES) / (time.perf_counter() - start)


def main() -> None:
    # The codec itself, past the per-value cache `decode` keeps (every sample is distinct).
    def through_codecs() -> None:
        for uuid, data in SAMPLES:
            codec_for(uuid).from_bytes(data)

    def through_json() -> None:
        for uuid, data in SAMPLES:
            to_json(codec_for(uuid).from_bytes(data))

    unpackers = [struct.Struct("<B" + "H" * ((len(d) - 1) // 2)) for _, d in SAMPLES]

    def raw_struct() -> None:
        for (_, data), s in zip(SAMPLES, unpackers, strict=True):
            s.unpack_from(data)

    through_codecs()  # imports, and the SFLOAT word cache a running gateway also has warm
    decodes = _rate(through_codecs, ROUNDS)
    decodes_json = _rate(through_json, ROUNDS)
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
