"""Record Access Control Point 0x2A52 (GLS 1.0 section 3.5 and the GATT Specification
Supplement): the requests a collector writes and the responses a meter indicates.

Wire format: Op Code (uint8), Operator (uint8), Operand (what the op code and operator say):

| op code | operator | operand |
| --- | --- | --- |
| 1 report, 2 delete, 4 report number | 2 <=  | filter type, max |
| (same) | 3 >= | filter type, min |
| (same) | 4 within range (inclusive) | filter type, min, max |
| (same) | 0 null, 1 all, 5 first, 6 last | none |
| 3 abort | 0 null | none |
| 5 number of stored records response | 0 null | uint16 count |
| 6 response code | 0 null | request op code (uint8), response code (uint8) |

Filter type 1 is the sequence number (uint16 bounds); 2 is the user facing time (base time +
time offset), each bound a Date Time of 7 octets.

Our readings:
- Every coded field keeps the codes the specification reserves (`OpenCode`): the meter must
  answer a reserved op code with "op code not supported", a reserved operator with "operator
  not supported" and a reserved filter type with "operand not supported", so it must be able
  to decode them. The octets after a reserved op code or filter type cannot be typed; they
  are kept as `operand` (JSON: hex) so the value re-encodes exactly.
- A user-facing-time bound with an unknown date (year, month or day 0) bounds nothing: it is
  `MalformedValue`, which a meter answers with "invalid operand".
- Extra octets after a complete value are ignored, as everywhere in `codec.py`. A meter that
  wants to refuse them ("invalid operand") compares lengths itself (`extra_octets`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar, Final, Self

from device_drivers.codec import ByteReader, ByteWriter, register
from device_drivers.errors import UnencodableValue
from device_drivers.glucose import OpenCode

__all__ = [
    "FILTERED_OPERATORS",
    "RECORD_OP_CODES",
    "FilterType",
    "OpCode",
    "Operator",
    "Racp",
    "ResponseCode",
]


class OpCode(OpenCode):
    REPORT_STORED_RECORDS = 1
    DELETE_STORED_RECORDS = 2
    ABORT_OPERATION = 3
    REPORT_NUMBER_OF_STORED_RECORDS = 4
    NUMBER_OF_STORED_RECORDS_RESPONSE = 5
    RESPONSE_CODE = 6


class Operator(OpenCode):
    NULL = 0
    ALL_RECORDS = 1
    LESS_THAN_OR_EQUAL_TO = 2
    GREATER_THAN_OR_EQUAL_TO = 3
    WITHIN_RANGE_OF = 4
    FIRST_RECORD = 5
    LAST_RECORD = 6


class FilterType(OpenCode):
    SEQUENCE_NUMBER = 1
    USER_FACING_TIME = 2


class ResponseCode(OpenCode):
    SUCCESS = 1
    OP_CODE_NOT_SUPPORTED = 2
    INVALID_OPERATOR = 3
    OPERATOR_NOT_SUPPORTED = 4
    INVALID_OPERAND = 5
    NO_RECORDS_FOUND = 6
    ABORT_UNSUCCESSFUL = 7
    PROCEDURE_NOT_COMPLETED = 8
    OPERAND_NOT_SUPPORTED = 9


RECORD_OP_CODES: Final = frozenset(
    {
        OpCode.REPORT_STORED_RECORDS,
        OpCode.DELETE_STORED_RECORDS,
        OpCode.REPORT_NUMBER_OF_STORED_RECORDS,
    }
)
"""The op codes that select records with an operator (and, for some operators, a filter)."""

FILTERED_OPERATORS: Final = frozenset(
    {
        Operator.LESS_THAN_OR_EQUAL_TO,
        Operator.GREATER_THAN_OR_EQUAL_TO,
        Operator.WITHIN_RANGE_OF,
    }
)
"""The operators whose operand is a filter type and bounds."""

Bound = int | datetime
"""A filter bound: a sequence number, or a user facing time (device local, naive)."""


def _typed(code: OpenCode) -> bool:
    """True for a code the specification defines (not a reserved pseudo-member)."""
    return not str(code.name).startswith("RESERVED_")


@register(0x2A52)
@dataclass(frozen=True, slots=True)
class Racp:
    """One RACP value, request or response. `min` / `max` are the filter bounds the operator
    uses (``<=`` has only `max`, ``>=`` only `min`); `operand` holds octets that could not be
    typed (after a reserved op code or filter type)."""

    UUID: ClassVar[int]
    op_code: OpCode
    operator: Operator = Operator.NULL
    filter_type: FilterType | None = None
    min: Bound | None = None
    max: Bound | None = None
    number_of_records: int | None = None
    request_op_code: OpCode | None = None
    response_code: ResponseCode | None = None
    operand: bytes | None = None

    # -- requests a collector writes ---------------------------------------------------------

    @classmethod
    def report_all_records(cls) -> Self:
        return cls(OpCode.REPORT_STORED_RECORDS, Operator.ALL_RECORDS)

    @classmethod
    def report_records_from(cls, sequence_number: int) -> Self:
        """Every record whose sequence number is >= `sequence_number` (Carebox's incremental
        retrieval: the last committed sequence number + 1)."""
        return cls(
            OpCode.REPORT_STORED_RECORDS,
            Operator.GREATER_THAN_OR_EQUAL_TO,
            FilterType.SEQUENCE_NUMBER,
            min=_sequence_number(sequence_number),
        )

    @classmethod
    def report_records_up_to(cls, sequence_number: int) -> Self:
        return cls(
            OpCode.REPORT_STORED_RECORDS,
            Operator.LESS_THAN_OR_EQUAL_TO,
            FilterType.SEQUENCE_NUMBER,
            max=_sequence_number(sequence_number),
        )

    @classmethod
    def report_records_between(cls, first: int, last: int) -> Self:
        """Records with first <= sequence number <= last."""
        return cls(
            OpCode.REPORT_STORED_RECORDS,
            Operator.WITHIN_RANGE_OF,
            FilterType.SEQUENCE_NUMBER,
            min=_sequence_number(first),
            max=_sequence_number(last),
        )

    @classmethod
    def report_first_record(cls) -> Self:
        return cls(OpCode.REPORT_STORED_RECORDS, Operator.FIRST_RECORD)

    @classmethod
    def report_last_record(cls) -> Self:
        return cls(OpCode.REPORT_STORED_RECORDS, Operator.LAST_RECORD)

    @classmethod
    def report_number_of_records(cls, from_sequence_number: int | None = None) -> Self:
        """How many records are stored (all, or those >= `from_sequence_number`)."""
        if from_sequence_number is None:
            return cls(OpCode.REPORT_NUMBER_OF_STORED_RECORDS, Operator.ALL_RECORDS)
        return cls(
            OpCode.REPORT_NUMBER_OF_STORED_RECORDS,
            Operator.GREATER_THAN_OR_EQUAL_TO,
            FilterType.SEQUENCE_NUMBER,
            min=_sequence_number(from_sequence_number),
        )

    @classmethod
    def delete_all_records(cls) -> Self:
        """Modelled for the simulator; Carebox itself never deletes a meter's records."""
        return cls(OpCode.DELETE_STORED_RECORDS, Operator.ALL_RECORDS)

    @classmethod
    def abort(cls) -> Self:
        return cls(OpCode.ABORT_OPERATION, Operator.NULL)

    # -- responses a meter indicates ---------------------------------------------------------

    @classmethod
    def number_of_records_response(cls, count: int) -> Self:
        return cls(OpCode.NUMBER_OF_STORED_RECORDS_RESPONSE, Operator.NULL, number_of_records=count)

    @classmethod
    def response(cls, request_op_code: int, response_code: ResponseCode) -> Self:
        return cls(
            OpCode.RESPONSE_CODE,
            Operator.NULL,
            request_op_code=OpCode(request_op_code),
            response_code=response_code,
        )

    @property
    def is_response(self) -> bool:
        """True for the two values a meter indicates (they end a procedure)."""
        return self.op_code in (OpCode.NUMBER_OF_STORED_RECORDS_RESPONSE, OpCode.RESPONSE_CODE)

    # -- codec -------------------------------------------------------------------------------

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        r = ByteReader(0x2A52, data)
        op_code = OpCode(r.u8("op_code"))
        operator = Operator(r.u8("operator"))
        if op_code in RECORD_OP_CODES and operator in FILTERED_OPERATORS:
            filter_type = FilterType(r.u8("filter_type"))
            if not _typed(filter_type):
                return cls(op_code, operator, filter_type, operand=r.rest() or None)
            low = high = None
            if operator != Operator.LESS_THAN_OR_EQUAL_TO:
                low = _read_bound(r, filter_type, "min")
            if operator != Operator.GREATER_THAN_OR_EQUAL_TO:
                high = _read_bound(r, filter_type, "max")
            return cls(op_code, operator, filter_type, low, high)
        if op_code == OpCode.NUMBER_OF_STORED_RECORDS_RESPONSE:
            return cls(op_code, operator, number_of_records=r.u16("number_of_records"))
        if op_code == OpCode.RESPONSE_CODE:
            request = OpCode(r.u8("request_op_code"))
            code = ResponseCode(r.u8("response_code"))
            return cls(op_code, operator, request_op_code=request, response_code=code)
        if not _typed(op_code):
            return cls(op_code, operator, operand=r.rest() or None)
        return cls(op_code, operator)

    def __bytes__(self) -> bytes:
        op_code, operator = OpCode(self.op_code), Operator(self.operator)
        w = ByteWriter()
        w.u8(op_code, "op_code")
        w.u8(operator, "operator")
        carried: set[str] = set()
        if op_code in RECORD_OP_CODES and operator in FILTERED_OPERATORS:
            if self.filter_type is None:
                raise UnencodableValue(f"operator {operator.name} needs a filter_type")
            filter_type = FilterType(self.filter_type)
            w.u8(filter_type, "filter_type")
            carried.add("filter_type")
            if not _typed(filter_type):
                w.raw(self.operand or b"")
                carried.add("operand")
            else:
                if operator != Operator.LESS_THAN_OR_EQUAL_TO:
                    _write_bound(w, filter_type, self.min, "min")
                    carried.add("min")
                if operator != Operator.GREATER_THAN_OR_EQUAL_TO:
                    _write_bound(w, filter_type, self.max, "max")
                    carried.add("max")
        elif op_code == OpCode.NUMBER_OF_STORED_RECORDS_RESPONSE:
            if self.number_of_records is None:
                raise UnencodableValue("a number of stored records response needs the number")
            w.u16(self.number_of_records, "number_of_records")
            carried.add("number_of_records")
        elif op_code == OpCode.RESPONSE_CODE:
            if self.request_op_code is None or self.response_code is None:
                raise UnencodableValue("a response code needs request_op_code and response_code")
            w.u8(self.request_op_code, "request_op_code")
            w.u8(self.response_code, "response_code")
            carried |= {"request_op_code", "response_code"}
        elif not _typed(op_code):
            w.raw(self.operand or b"")
            carried.add("operand")
        stray = [
            name
            for name in (
                "filter_type",
                "min",
                "max",
                "number_of_records",
                "request_op_code",
                "response_code",
                "operand",
            )
            if getattr(self, name) is not None and name not in carried
        ]
        if stray:
            raise UnencodableValue(
                f"op code {op_code.name} with operator {operator.name} carries no "
                + ", ".join(stray)
            )
        return bytes(w)

    def extra_octets(self, data: bytes) -> int:
        """How many octets of `data` (the bytes this value was decoded from) follow the last
        field this value carries: a meter answers "invalid operand" for them."""
        return max(0, len(data) - len(bytes(self)))


def _sequence_number(value: int) -> int:
    if not 0 <= value <= 0xFFFF:
        raise UnencodableValue(f"sequence number {value} outside 0..65535")
    return value


def _read_bound(r: ByteReader, filter_type: FilterType, what: str) -> Bound:
    if filter_type == FilterType.SEQUENCE_NUMBER:
        return r.u16(what)
    start = r.offset
    stamp = r.date_time(what)
    if stamp is None:
        raise r.error(f"{what}: a user facing time with an unknown date bounds nothing", start)
    return stamp


def _write_bound(w: ByteWriter, filter_type: FilterType, value: Bound | None, what: str) -> None:
    if filter_type == FilterType.SEQUENCE_NUMBER:
        if not isinstance(value, int) or isinstance(value, bool):
            raise UnencodableValue(f"{what} must be a sequence number (int), got {value!r}")
        w.u16(value, what)
        return
    if not isinstance(value, datetime):
        raise UnencodableValue(f"{what} must be a user facing time (datetime), got {value!r}")
    w.date_time(value)
