"""The contract every characteristic codec passes. A test class names its codec, worked
examples (hex -> the contract's JSON) and a hypothesis strategy of typed values; the base class
runs: examples decode and re-encode exactly, empty and truncated values are `MalformedValue`,
extra octets are ignored, arbitrary bytes give a value or `MalformedValue` and nothing else,
and every generated value survives encode -> decode unchanged."""

from __future__ import annotations

import json
from typing import Any, ClassVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from device_drivers import MalformedValue, decode, to_json
from device_drivers.codec import Codec

FUZZ = settings(
    max_examples=400,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.differing_executors],
    deadline=None,
)


class CodecContract:
    codec: ClassVar[type[Codec]]
    # (hex, expected JSON object) pairs: spec worked examples and hand-computed cases.
    examples: ClassVar[list[tuple[str, dict[str, Any]]]]
    # Typed values for the encode -> decode round trip.
    values: ClassVar[st.SearchStrategy[Any]]
    # False for codecs whose trailing fields are optional by length (strings, PnP ID...).
    prefixes_fail: ClassVar[bool] = True
    empty_fails: ClassVar[bool] = True

    def test_examples_decode_to_contract_json(self) -> None:
        for hex_value, expected in self.examples:
            got = to_json(decode(self.codec.UUID, bytes.fromhex(hex_value)))
            assert got == expected, hex_value
            # The JSON text itself carries no float artefacts (120.5, never 120.49999).
            assert json.loads(json.dumps(got)) == expected

    def test_examples_reencode_to_the_same_bytes(self) -> None:
        for hex_value, _ in self.examples:
            value = self.codec.from_bytes(bytes.fromhex(hex_value))
            assert bytes(value).hex() == hex_value

    def test_empty_value_is_malformed(self) -> None:
        if not self.empty_fails:
            return
        with pytest.raises(MalformedValue) as info:
            decode(self.codec.UUID, b"")
        assert info.value.characteristic == self.codec.UUID

    def test_every_truncation_is_malformed(self) -> None:
        if not self.prefixes_fail:
            return
        for hex_value, _ in self.examples:
            data = bytes.fromhex(hex_value)
            for cut in range(len(data)):
                with pytest.raises(MalformedValue) as info:
                    decode(self.codec.UUID, data[:cut])
                err = info.value
                assert err.data == data[:cut]
                assert 0 <= err.offset <= cut
                assert f"{self.codec.UUID:04X}" in str(err)

    def test_extra_octets_are_ignored(self) -> None:
        for hex_value, expected in self.examples:
            data = bytes.fromhex(hex_value) + b"\x00\xff\x13"
            assert to_json(decode(self.codec.UUID, data)) == expected

    @FUZZ
    @given(data=st.binary(max_size=64))
    def test_arbitrary_bytes_decode_or_raise_malformed(self, data: bytes) -> None:
        try:
            value = decode(self.codec.UUID, data)
        except MalformedValue as exc:
            assert exc.data == data
            return
        json.dumps(to_json(value))

    @FUZZ
    @given(data=st.data())
    def test_round_trip(self, data: st.DataObject) -> None:
        value = data.draw(self.values)
        encoded = bytes(value)
        assert self.codec.from_bytes(encoded) == value
