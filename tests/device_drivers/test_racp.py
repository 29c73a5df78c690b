from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

import pytest
from hypothesis import strategies as st

from device_drivers import MalformedValue, UnencodableValue, decode, to_json
from device_drivers.racp import (
    FILTERED_OPERATORS,
    RECORD_OP_CODES,
    FilterType,
    OpCode,
    Operator,
    Racp,
    ResponseCode,
)
from tests.device_drivers.codec_contract import CodecContract
from tests.device_drivers.glucose_strategies import datetimes, uint16

_reserved_filter_types = st.integers(3, 255).map(FilterType)
_operand = st.none() | st.binary(min_size=1, max_size=8)


@st.composite
def _record_requests(draw: st.DrawFn) -> Racp:
    op_code = draw(st.sampled_from(sorted(RECORD_OP_CODES)))
    operator = Operator(draw(st.integers(0, 255)))
    if operator not in FILTERED_OPERATORS:
        return Racp(op_code, operator)
    choice = draw(st.sampled_from(["seq", "time", "reserved"]))
    if choice == "reserved":
        return Racp(op_code, operator, draw(_reserved_filter_types), operand=draw(_operand))
    filter_type = FilterType.SEQUENCE_NUMBER if choice == "seq" else FilterType.USER_FACING_TIME
    bounds: st.SearchStrategy[int | datetime] = uint16 if choice == "seq" else datetimes
    low = None if operator == Operator.LESS_THAN_OR_EQUAL_TO else draw(bounds)
    high = None if operator == Operator.GREATER_THAN_OR_EQUAL_TO else draw(bounds)
    return Racp(op_code, operator, filter_type, low, high)


_racp_values = st.one_of(
    _record_requests(),
    st.builds(Racp, st.just(OpCode.ABORT_OPERATION), st.integers(0, 255).map(Operator)),
    st.builds(
        Racp,
        st.just(OpCode.NUMBER_OF_STORED_RECORDS_RESPONSE),
        st.integers(0, 255).map(Operator),
        number_of_records=uint16,
    ),
    st.builds(
        Racp,
        st.just(OpCode.RESPONSE_CODE),
        st.integers(0, 255).map(Operator),
        request_op_code=st.integers(0, 255).map(OpCode),
        response_code=st.integers(0, 255).map(ResponseCode),
    ),
    st.builds(
        Racp,
        st.sampled_from([0, *range(7, 256)]).map(OpCode),
        st.integers(0, 255).map(Operator),
        operand=_operand,
    ),
)


class TestRacp(CodecContract):
    codec = Racp
    examples: ClassVar[list[tuple[str, dict[str, Any]]]] = [
        ("0101", {"op_code": 1, "operator": 1}),  # report all
        ("0103010500", {"op_code": 1, "operator": 3, "filter_type": 1, "min": 5}),  # >= 5
        ("0102010a00", {"op_code": 1, "operator": 2, "filter_type": 1, "max": 10}),  # <= 10
        (  # 1 <= seq <= 0x0900
            "01040101000009",
            {"op_code": 1, "operator": 4, "filter_type": 1, "min": 1, "max": 0x0900},
        ),
        ("0105", {"op_code": 1, "operator": 5}),  # first
        ("0106", {"op_code": 1, "operator": 6}),  # last
        ("0100", {"op_code": 1, "operator": 0}),  # null: the meter says "invalid operator"
        ("0201", {"op_code": 2, "operator": 1}),  # delete all
        ("0203010a00", {"op_code": 2, "operator": 3, "filter_type": 1, "min": 10}),
        ("0300", {"op_code": 3, "operator": 0}),  # abort
        ("0401", {"op_code": 4, "operator": 1}),  # report number of records
        ("0500f401", {"op_code": 5, "operator": 0, "number_of_records": 500}),
        # User facing time, within 2017-12-31 23:59:59 .. 2018-01-01 00:00:00.
        (
            "010402" + "e1070c1f173b3b" + "e2070101000000",
            {
                "op_code": 1,
                "operator": 4,
                "filter_type": 2,
                "min": "2017-12-31T23:59:59",
                "max": "2018-01-01T00:00:00",
            },
        ),
        # Every response code, answering "report stored records".
        *[
            (
                f"060001{code:02x}",
                {"op_code": 6, "operator": 0, "request_op_code": 1, "response_code": code},
            )
            for code in range(1, 10)
        ],
    ]
    values = _racp_values


def test_convenience_constructors() -> None:
    assert bytes(Racp.report_all_records()).hex() == "0101"
    assert bytes(Racp.report_records_from(0x1234)).hex() == "0103013412"
    assert bytes(Racp.report_records_up_to(2)).hex() == "0102010200"
    assert bytes(Racp.report_records_between(2, 3)).hex() == "01040102000300"
    assert bytes(Racp.report_first_record()).hex() == "0105"
    assert bytes(Racp.report_last_record()).hex() == "0106"
    assert bytes(Racp.report_number_of_records()).hex() == "0401"
    assert bytes(Racp.report_number_of_records(7)).hex() == "0403010700"
    assert bytes(Racp.delete_all_records()).hex() == "0201"
    assert bytes(Racp.abort()).hex() == "0300"
    assert bytes(Racp.number_of_records_response(3)).hex() == "05000300"
    response = Racp.response(OpCode.ABORT_OPERATION, ResponseCode.ABORT_UNSUCCESSFUL)
    assert bytes(response).hex() == "06000307"
    assert response.is_response
    assert not Racp.abort().is_response
    with pytest.raises(UnencodableValue):
        Racp.report_records_from(0x10000)


@pytest.mark.parametrize(
    ("hex_value", "expected"),
    [
        # A reserved op code keeps its octets, so a meter can answer "op code not supported".
        ("09000102", {"op_code": 9, "operator": 0, "operand": "0102"}),
        ("0000", {"op_code": 0, "operator": 0}),
        # A reserved operator has no known operand: the meter says "operator not supported".
        ("0107", {"op_code": 1, "operator": 7}),
        # A reserved filter type keeps the octets after it ("operand not supported").
        ("0103070102", {"op_code": 1, "operator": 3, "filter_type": 7, "operand": "0102"}),
        ("010303", {"op_code": 1, "operator": 3, "filter_type": 3}),
    ],
)
def test_reserved_codes_decode_and_reencode(hex_value: str, expected: dict[str, Any]) -> None:
    value = decode(0x2A52, bytes.fromhex(hex_value))
    assert to_json(value) == expected
    assert bytes(value).hex() == hex_value


def test_unknown_date_bound_is_malformed() -> None:
    with pytest.raises(MalformedValue, match="unknown date"):
        decode(0x2A52, bytes.fromhex("010302" + "00000000000000"))


def test_extra_octets_are_counted_for_the_meter() -> None:
    data = bytes.fromhex("010100")
    assert Racp.from_bytes(data).extra_octets(data) == 1
    data = bytes.fromhex("0103010500")
    assert Racp.from_bytes(data).extra_octets(data) == 0


@pytest.mark.parametrize(
    "value",
    [
        Racp(OpCode.REPORT_STORED_RECORDS, Operator.GREATER_THAN_OR_EQUAL_TO),
        Racp(
            OpCode.REPORT_STORED_RECORDS,
            Operator.GREATER_THAN_OR_EQUAL_TO,
            FilterType.SEQUENCE_NUMBER,
        ),
        Racp(
            OpCode.REPORT_STORED_RECORDS,
            Operator.GREATER_THAN_OR_EQUAL_TO,
            FilterType.SEQUENCE_NUMBER,
            min=datetime(2024, 1, 1),
        ),
        Racp(
            OpCode.REPORT_STORED_RECORDS,
            Operator.LESS_THAN_OR_EQUAL_TO,
            FilterType.USER_FACING_TIME,
            max=3,
        ),
        # `min` is not carried by "<=": refusing it keeps encode -> decode lossless.
        Racp(
            OpCode.REPORT_STORED_RECORDS,
            Operator.LESS_THAN_OR_EQUAL_TO,
            FilterType.SEQUENCE_NUMBER,
            min=1,
            max=3,
        ),
        Racp(OpCode.REPORT_STORED_RECORDS, Operator.ALL_RECORDS, FilterType.SEQUENCE_NUMBER),
        Racp(OpCode.ABORT_OPERATION, operand=b"\x01"),
        Racp(OpCode.NUMBER_OF_STORED_RECORDS_RESPONSE),
        Racp(OpCode.RESPONSE_CODE, request_op_code=OpCode.ABORT_OPERATION),
    ],
)
def test_inconsistent_values_are_unencodable(value: Racp) -> None:
    with pytest.raises(UnencodableValue):
        bytes(value)
