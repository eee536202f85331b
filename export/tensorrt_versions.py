"""What differs between TensorRT versions, in one table (``VERSIONS``).

One row per range of TensorRT versions that agree on everything the ONNX checker
(``export.trt_check``) and the engine builder (``export.tensorrt.build_plan``) need: a row holds
from its ``since`` up to the next row's ``since``. Its columns:

- ``parser``: the ONNX parser's rules (``ParserGeneration``: the opsets it reads, the ops it
  supports, the types a DequantizeLinear may take, whether Q/DQ must pass a zero point). Four
  parsers are documented (the onnx-tensorrt ``docs/operators.md`` of 8.5, 8.6, 10.1 and 10.15;
  8.5's importer also requires the zero-point input of Q/DQ; op lists in
  ``export.tensorrt_ops``); a version between two is held to the older one's rules, so several
  rows share one parser;
- ``implicit_int8``: the ``IInt8EntropyCalibrator2`` API: ``supported``, ``deprecated`` (10.1:
  the builder no longer uses it) or ``removed`` (11);
- ``explicit_batch_flag``: networks need ``NetworkDefinitionCreationFlag.EXPLICIT_BATCH`` (8.x);
- ``strongly_typed``: the network takes the types the ONNX gives it (10.12 deprecated the
  precision flags, 11 removed them): FP16 is baked into the FP16 ONNX, INT8 comes from the Q/DQ
  ONNX with FP16 or FP32 float layers, and no ``BuilderFlag`` is set;
- ``typed_flag``: strong typing is asked for with ``NetworkDefinitionCreationFlag.STRONGLY_TYPED``
  (10.12 .. 10.x; 11 is always strongly typed and the flag is deprecated there);
- ``lowers_opset``: the build lowers its Q/DQ ONNX to the parser's highest opset (8.x reads 17,
  less than the 19 ModelOpt writes); elsewhere the parser reads every opset we write.

Versions are ``(major, minor)`` tuples (``parse_version``); ``version_label`` names one.
"""

from __future__ import annotations

from dataclasses import dataclass

from densedepth.util.errors import ExportError
from export.tensorrt_ops import OPS_8_5, OPS_8_6, OPS_10_1, OPS_10_15

Version = tuple[int, int]
IMPLICIT_INT8_STATES = ("supported", "deprecated", "removed")


@dataclass(frozen=True)
class ParserGeneration:
    """What one documented TensorRT ONNX parser accepts."""

    since: Version  # the first TensorRT whose parser these rules describe
    min_opset: int
    max_opset: int
    ops: frozenset[str]
    dq_inputs: frozenset[str]  # ONNX data type names a DequantizeLinear may take
    zero_point_input: bool = False  # Q/DQ must pass the zero point (8.5: "requires 3 inputs")


PARSER_8_5 = ParserGeneration((8, 5), 1, 17, OPS_8_5, frozenset({"INT8"}), True)
PARSER_8_6 = ParserGeneration((8, 6), 1, 17, OPS_8_6, frozenset({"INT8"}))
PARSER_10_0 = ParserGeneration(
    (10, 0), 9, 20, OPS_10_1, frozenset({"INT8", "FLOAT8E4M3FN", "INT4"})
)
PARSER_10_15 = ParserGeneration(
    (10, 15), 9, 24, OPS_10_15, frozenset({"INT8", "FLOAT8E4M3FN", "FLOAT4E2M1", "INT4"})
)


@dataclass(frozen=True)
class TensorRTVersion:
    """One row of ``VERSIONS``: TensorRT ``since`` up to the next row (see the module doc)."""

    since: Version
    parser: ParserGeneration
    implicit_int8: str  # IInt8EntropyCalibrator2: supported | deprecated | removed
    explicit_batch_flag: bool
    strongly_typed: bool
    typed_flag: bool
    lowers_opset: bool

    @property
    def plan_max_opset(self) -> int | None:
        """The highest opset a build for this version writes (None: any we write)."""
        return self.parser.max_opset if self.lowers_opset else None


# fmt: off
VERSIONS = (
    # since / parser / implicit_int8 / explicit_batch_flag / strongly_typed / typed_flag /
    # lowers_opset
    TensorRTVersion((8, 5),   PARSER_8_5,   "supported",  True,  False, False, True),   # 8.5
    TensorRTVersion((8, 6),   PARSER_8_6,   "supported",  True,  False, False, True),   # 8.6 .. 9.x
    TensorRTVersion((10, 0),  PARSER_10_0,  "supported",  False, False, False, False),
    TensorRTVersion((10, 1),  PARSER_10_0,  "deprecated", False, False, False, False),
    TensorRTVersion((10, 12), PARSER_10_0,  "deprecated", False, True,  True,  False),
    TensorRTVersion((10, 15), PARSER_10_15, "deprecated", False, True,  True,  False),
    TensorRTVersion((11, 0),  PARSER_10_15, "removed",    False, True,  False, False),
)
# fmt: on

# What --onnx-only plans for when no TensorRT is here: the first strongly typed version (every
# later one builds from the same ONNX).
NEWEST_PLANNED: Version = next(row.since for row in VERSIONS if row.strongly_typed)


def row_for(version: Version) -> TensorRTVersion | None:
    """The row holding TensorRT ``version``; None when it is older than every row."""
    rows = [row for row in VERSIONS if row.since <= version]
    return rows[-1] if rows else None


def parse_version(text: str) -> Version:
    """'10.3.0.26' -> (10, 3)."""
    parts = [*text.split("."), "0"][:2]
    try:
        return int(parts[0]), int(parts[1])
    except ValueError:
        raise ExportError(f"cannot read the TensorRT version {text!r}") from None


def version_label(version: Version | None) -> str:
    """``TensorRT 10.3``, or what an unknown version is planned as."""
    if version is None:
        newest, last = NEWEST_PLANNED, VERSIONS[-1].since[0]
        return f"TensorRT {newest[0]}.{newest[1]}+ / {last} (strongly typed)"
    return f"TensorRT {version[0]}.{version[1]}"


def _short(version: Version) -> str:
    return str(version[0]) if version[1] == 0 else f"{version[0]}.{version[1]}"


def implicit_int8_history() -> str:
    """``deprecated in 10.1, removed in 11``: when the implicit INT8 calibrator went."""
    went = [
        f"{state} in {_short(next(r.since for r in VERSIONS if r.implicit_int8 == state))}"
        for state in IMPLICIT_INT8_STATES[1:]
    ]
    return ", ".join(went)
