"""A recording ``tensorrt`` module built from a manifest of NVIDIA's real bindings.

The manifest (``tests/tensorrt_api.py``) lists every class, enum, member, method and property of
one TensorRT version with its pybind11 signature. The fake has exactly those: an unknown name is
an AttributeError, a call that binds to no signature (wrong keyword, wrong count) or passes the
wrong enum or class is a TypeError, a read-only property cannot be set, a class without a
constructor cannot be made. Every use is recorded in order (``FakeTensorRT.calls``, ``.used``).

What the calls do is simulated only as far as a build and an inference need it, with the
checks TensorRT makes: the parser reads the ONNX (our ONNX files, for real); a strongly typed
network refuses precision flags; a Q/DQ network built weakly typed needs the INT8 flag; a
dynamic input needs an optimisation profile; a timing cache from another GPU or TensorRT is
refused by ``set_timing_cache``; an INT8 calibrator is pulled batch by batch from device memory
as TensorRT pulls it; the "engine" is bound to the TensorRT version and runs the ONNX with ONNX
Runtime on the bytes the fake GPU (``fake_cuda``) holds at the addresses it was given.
"""

from __future__ import annotations

import importlib.machinery
import json
import re
import types
from dataclasses import dataclass
from typing import Any

import numpy as np
from fake_cuda import FakeGPU

ENGINE_MAGIC = b"FAKE-TRT-PLAN\n"
ANY = object()  # a default value from a pybind11 signature


# ------------------------------------------------------------------------------------------
# Signatures
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Param:
    name: str
    type: str
    has_default: bool


def _split_top(text: str) -> list[str]:
    """Split on commas outside brackets and angle brackets."""
    parts, depth, cur = [], 0, ""
    for ch in text:
        if ch in "[(<{":
            depth += 1
        elif ch in "])>}":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    if cur.strip():
        parts.append(cur)
    return [p.strip() for p in parts]


def parse_signature(text: str) -> list[Param] | None:
    """``(self: X, a: int, b: str = None) -> bool`` -> its parameters (None for ``*args``)."""
    m = re.match(r"^\((.*)\)(\s*->.*)?$", text.strip())
    if not m:
        return None
    params = []
    for part in _split_top(m.group(1)):
        if part.startswith("*"):
            return None
        name, _, rest = part.partition(":")
        type_, eq, _ = rest.partition("=")
        params.append(Param(name.strip(), type_.strip(), bool(eq)))
    return params


# ------------------------------------------------------------------------------------------
# The module
# ------------------------------------------------------------------------------------------


class FakeEnumMember(int):
    """A pybind11 enum value: an int with a name, of its enum's class."""

    name: str

    def __repr__(self) -> str:
        return f"<{type(self).__qualname__}.{self.name}: {int(self)}>"


class FakeTensorRT:
    """Builds the fake module for one manifest and records what is used."""

    def __init__(self, manifest: dict[str, Any], gpu: FakeGPU, **options: Any) -> None:
        self.manifest = manifest
        self.version = manifest["tensorrt_version"]
        self.gpu = gpu
        self.calls: list[str] = []
        self.used: set[str] = set()
        self.options = {
            "io_dtypes": {},  # tensor name -> DataType member name the engine reports
            "io_scales": {},  # INT8 I/O tensor -> its scale (set at build, not queryable)
            "calibration_batches": None,  # how many batches the calibrator gave
            "calibration_shape": None,  # the shape TensorRT calibrated at
            **options,
        }
        self.timing_signature = f"TIMING {self.version} {gpu.name}".encode()
        self.classes: dict[str, type] = {}
        self.module = self._build_module()

    # ---------------------------------------------------------------- construction
    def _record(self, name: str, detail: str = "") -> None:
        self.used.add(name)
        self.calls.append(f"{name}{detail}")

    def _build_module(self) -> types.ModuleType:
        fake = self
        classes = self.manifest["classes"]
        for name, entry in classes.items():  # enums first: classes refer to them
            if entry["kind"] == "enum":
                self.classes[name] = self._make_enum(name, entry)
        for name, entry in classes.items():
            if entry["kind"] == "class":
                self._ensure_class(name)
        for name, cls in list(self.classes.items()):  # nested enums: ILogger.Severity
            if "." in name:
                outer, inner = name.split(".", 1)
                if outer in self.classes:
                    type.__setattr__(self.classes[outer], inner, cls)
        for name, entry in classes.items():  # class-level enum values: Logger.WARNING
            for value_name, value in entry.get("values", {}).items():
                enum_cls = self.classes.get(value["enum"])
                if enum_cls is not None and name in self.classes:
                    member = enum_cls._by_value[value["value"]]  # type: ignore[attr-defined]
                    type.__setattr__(self.classes[name], value_name, member)

        class Module(types.ModuleType):
            def __getattribute__(self, attr: str) -> Any:
                value = super().__getattribute__(attr)
                if not attr.startswith("__"):
                    fake.used.add(attr)
                return value

            def __getattr__(self, attr: str) -> Any:
                raise AttributeError(f"module 'tensorrt' {fake.version} has no attribute {attr!r}")

        module = Module("tensorrt")
        module.__spec__ = importlib.machinery.ModuleSpec("tensorrt", None)
        module.__version__ = self.version
        for name, cls in self.classes.items():
            if "." not in name:
                setattr(module, name, cls)
        for name, value in self.manifest["values"].items():
            enum_cls = self.classes.get(value["enum"])
            if enum_cls is not None:
                setattr(module, name, enum_cls._by_value[value["value"]])  # type: ignore[attr-defined]
        for name in self.manifest["functions"]:
            setattr(module, name, self._make_function(name))
        return module

    def _ensure_class(self, name: str) -> type:
        """Make class ``name`` after its bases (so ``isinstance`` follows the real hierarchy)."""
        if name not in self.classes:
            entry = self.manifest["classes"][name]
            for base in entry["bases"]:
                if self.manifest["classes"].get(base, {}).get("kind") == "class":
                    self._ensure_class(base)
            self.classes[name] = self._make_class(name, entry)
        return self.classes[name]

    def _make_enum(self, name: str, entry: dict[str, Any]) -> type:
        fake = self

        class Meta(type):
            def __getattribute__(cls, attr: str) -> Any:
                value = type.__getattribute__(cls, attr)
                if isinstance(value, FakeEnumMember):
                    fake._record(f"{name}.{attr}")
                return value

        short = name.split(".")[-1]
        cls = Meta(short, (FakeEnumMember,), {"__qualname__": name})
        by_value = {}
        members = {}
        for member, info in entry["members"].items():
            obj = FakeEnumMember.__new__(cls, info["value"])
            obj.name = member
            type.__setattr__(cls, member, obj)
            by_value.setdefault(info["value"], obj)
            members[member] = obj
        type.__setattr__(cls, "_by_value", by_value)
        type.__setattr__(cls, "__members__", members)
        return cls

    def _make_function(self, name: str) -> Any:
        fake = self

        def function(*args: Any, **kwargs: Any) -> Any:
            fake._record(name)
            behaviour = getattr(fake, f"fn_{name}", None)
            return behaviour(*args, **kwargs) if behaviour else None

        function.__name__ = name
        return function

    def _make_class(self, name: str, entry: dict[str, Any]) -> type:
        fake = self
        bases_names = [b for b in entry["bases"] if b in self.manifest["classes"]]
        signatures = [s for s in (parse_signature(t) for t in entry["init"]) if s is not None]

        def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
            if not signatures:
                raise TypeError(f"tensorrt.{name}: No constructor defined!")
            bound = fake._bind(name, "__init__", signatures, (self, *args), kwargs)
            object.__setattr__(self, "_props", {})
            fake._record(f"{name}.__init__")
            hook = getattr(fake, f"init_{name}", None)
            if hook:
                hook(self, bound)

        def __setattr__(self: Any, attr: str, value: Any) -> None:
            if attr.startswith("_") or type(self).__name__ != name.split(".")[-1]:
                object.__setattr__(self, attr, value)  # our own state, or a user subclass
                return
            descriptor = getattr(type(self), attr, None)
            if isinstance(descriptor, property):
                descriptor.__set__(self, value)
                return
            raise AttributeError(f"tensorrt.{name} has no attribute {attr!r} to set")

        namespace: dict[str, Any] = {"__init__": __init__, "__setattr__": __setattr__}
        for method, info in entry["methods"].items():
            namespace[method] = self._make_method(name, method, info)
        for prop, info in entry["properties"].items():
            namespace[prop] = self._make_property(name, prop, info)
        if name == "IHostMemory":  # the real one has the buffer protocol
            namespace["__bytes__"] = lambda self: bytes(self._data)
        if name == "ParserError":
            namespace["__str__"] = lambda self: self._text
        bases = tuple(self.classes[b] for b in bases_names if b in self.classes) or (object,)
        return type(name.split(".")[-1], bases, namespace)

    def _make_method(self, cls: str, method: str, info: dict[str, Any]) -> Any:
        fake = self
        signatures = [s for s in (parse_signature(t) for t in info["signatures"]) if s]

        def call(self: Any, *args: Any, **kwargs: Any) -> Any:
            bound = fake._bind(cls, method, signatures, (self, *args), kwargs)
            shown = ", ".join(f"{k}={_short(v)}" for k, v in bound.items() if k != "self")
            fake._record(f"{cls}.{method}", f"({shown})")
            hook = getattr(fake, f"{_flat(cls)}__{method}", None)
            return hook(self, **{k: v for k, v in bound.items() if k != "self"}) if hook else None

        call.__name__ = method
        return call

    def _make_property(self, cls: str, prop: str, info: dict[str, Any]) -> property:
        fake = self

        def get(self: Any) -> Any:
            fake._record(f"{cls}.{prop}")
            hook = getattr(fake, f"{_flat(cls)}__get_{prop}", None)
            return hook(self) if hook else self._props.get(prop)

        def set_(self: Any, value: Any) -> None:
            if info["readonly"]:
                raise AttributeError(f"tensorrt.{cls}.{prop} is read-only")
            fake._record(f"{cls}.{prop}", f" = {_short(value)}")
            self._props[prop] = value

        return property(get, set_)

    def _bind(
        self,
        cls: str,
        method: str,
        signatures: list[list[Param]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> dict[str, Any]:
        """Bind to the first overload that takes these arguments (a TypeError otherwise)."""
        problems = []
        for params in signatures:
            bound, problem = self._try_bind(params, args, kwargs)
            if problem is None:
                return bound
            problems.append(problem)
        raise TypeError(f"tensorrt.{cls}.{method}(): incompatible arguments: {'; '.join(problems)}")

    def _try_bind(
        self, params: list[Param], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[dict[str, Any], str | None]:
        if len(args) > len(params):
            return {}, f"{len(args)} positional arguments for {len(params)} parameters"
        bound = {p.name: a for p, a in zip(params, args, strict=False)}
        for key, value in kwargs.items():
            if key not in {p.name for p in params} or key in bound:
                return {}, f"unexpected keyword {key!r}"
            bound[key] = value
        for p in params:
            if p.name not in bound:
                if not p.has_default:
                    return {}, f"missing {p.name!r}"
                bound[p.name] = ANY
            elif p.name != "self" and not self._type_ok(p.type, bound[p.name]):
                return {}, f"{p.name}={_short(bound[p.name])} is not {p.type}"
        return bound, None

    def _type_ok(self, type_: str, value: Any) -> bool:
        name = type_.removeprefix("typing.")
        if name.startswith("Dims") and isinstance(value, (list, tuple)):
            return all(isinstance(d, (int, np.integer)) for d in value)  # implicitly converted
        if name in self.classes:
            return value is None or isinstance(value, self.classes[name])
        if name in ("int", "SupportsInt"):
            return isinstance(value, (int, np.integer)) or hasattr(value, "__index__")
        if name == "bool":
            return isinstance(value, (bool, int, np.bool_))
        if name in ("float", "SupportsFloat"):
            return isinstance(value, (int, float, np.floating))
        if name == "str":
            return isinstance(value, str)
        if name in ("tuple", "list"):
            return isinstance(value, tuple if name == "tuple" else list)
        if name in ("buffer", "typing_extensions.Buffer", "bytes"):
            return isinstance(value, (bytes, bytearray, memoryview, np.ndarray))
        return True

    # ---------------------------------------------------------------- helpers
    def enum(self, cls: str, member: str) -> Any:
        return self.classes[cls].__members__[member]

    def new(self, cls: str, **props: Any) -> Any:
        """An instance made the way TensorRT makes them (not through a constructor)."""
        obj = object.__new__(self.classes[cls])
        object.__setattr__(obj, "_props", dict(props))
        return obj

    def host_memory(self, data: bytes) -> Any:
        obj = self.new("IHostMemory")
        object.__setattr__(obj, "_data", data)
        return obj

    def used_deprecated(self) -> list[str]:
        """Used names the manifest marks deprecated for this version."""
        found = []
        classes = self.manifest["classes"]
        for name in sorted(self.used):
            cls, _, member = name.rpartition(".")
            entry = classes.get(cls) or classes.get(name)
            notes: list[str] = []
            if entry is None:
                continue
            if name in classes:
                notes = entry.get("deprecated", [])
            elif entry["kind"] == "enum":
                notes = entry["members"].get(member, {}).get("deprecated", [])
            else:
                for kind in ("methods", "properties"):
                    notes = notes or entry.get(kind, {}).get(member, {}).get("deprecated", [])
            if notes:
                found.append(f"{name}: {notes[0]}")
        return found

    # ---------------------------------------------------------------- module functions
    def fn_nptype(self, trt_type: Any) -> Any:
        mapping = {"FLOAT": np.float32, "HALF": np.float16, "INT8": np.int8, "INT32": np.int32,
                   "INT64": np.int64, "BOOL": np.bool_, "UINT8": np.uint8}  # fmt: skip
        if trt_type.name not in mapping:
            raise TypeError("Could not resolve TensorRT datatype to an equivalent numpy datatype.")
        return mapping[trt_type.name]

    @staticmethod
    def _device_type(name: str) -> Any:
        """How the simulated GPU stores an I/O tensor of DataType ``name`` (BF16 through
        ml_dtypes: numpy has no bfloat16, which is why the real ``nptype`` refuses it)."""
        if name == "BF16":
            import ml_dtypes

            return ml_dtypes.bfloat16
        types_ = {"FLOAT": np.float32, "HALF": np.float16, "INT8": np.int8}
        return types_[name]

    # ---------------------------------------------------------------- builder side
    def Builder__create_network(self, builder: Any, flags: Any = ANY) -> Any:
        flags = 0 if flags is ANY else int(flags)
        members = self.classes["NetworkDefinitionCreationFlag"].__members__
        allowed = sum(1 << int(m) for m in members.values())
        if flags & ~allowed:
            raise TypeError(f"create_network: unknown flag bits {flags & ~allowed:#x}")
        typed = "STRONGLY_TYPED" in members and flags & (1 << int(members["STRONGLY_TYPED"]))
        typed = typed or int(self.version.split(".")[0]) >= 11  # always strongly typed there
        return self.new("INetworkDefinition", _flags=flags, _strongly_typed=bool(typed),
                        _inputs=[], _outputs=[], _onnx=None)  # fmt: skip

    def Builder__create_builder_config(self, builder: Any) -> Any:
        return self.new("IBuilderConfig", _flags=set(), _profiles=[], _timing=None, _pools={})

    def Builder__create_optimization_profile(self, builder: Any) -> Any:
        return self.new("IOptimizationProfile", _shapes={})

    def init_Builder(self, builder: Any, bound: dict[str, Any]) -> None:
        builder._props["_logger"] = bound["logger"]

    def _log(self, builder: Any, severity: str, message: str) -> None:
        """What TensorRT does with its messages: ``logger.log(severity, msg)`` (a Python
        ILogger subclass gets the call; trt.Logger filters by its own minimum)."""
        logger = builder._props.get("_logger")
        if logger is not None:
            logger.log(self.classes["ILogger.Severity"].__members__[severity], message)

    def Builder__get_num_DLA_cores(self, builder: Any) -> int:
        return int(self.options.get("dla_cores", 0))  # 0 on a desktop GPU, 2 on Jetson Orin

    def init_Runtime(self, runtime: Any, bound: dict[str, Any]) -> None:
        runtime._props["DLA_core"] = -1  # "Defaults to -1" (NvInferRuntime.h setDLACore)

    def Runtime__get_num_DLA_cores(self, runtime: Any) -> int:
        return int(self.options.get("dla_cores", 0))

    def _dla_refusal(
        self, builder: Any, network: Any, config: Any, flags: set[str], profile: Any
    ) -> str:
        """Why TensorRT will not build this network for DLA ('' when it will), from NVIDIA's
        DLA rules: a core of this device, FP16 / INT8 only, static shapes, and every layer
        DLA cannot run (here: Reciprocal, an align_corners or sizes-given bilinear Resize,
        Q/DQ) needing BuilderFlag.GPU_FALLBACK, which logs each layer that falls back."""
        import onnx

        core, count = config._props.get("DLA_core", -1), int(self.options.get("dla_cores", 0))
        if not 0 <= int(core) < count:
            return f"DLA core {core} requested, this device has {count}"
        if not network._props["_strongly_typed"] and not flags & {"FP16", "INT8"}:
            return "DLA runs FP16 and INT8 only (set BuilderFlag.FP16 or INT8)"
        if profile is not None and not profile[0] == profile[1] == profile[2]:
            return "DLA needs the optimization profile's min = opt = max"
        graph = onnx.load_from_string(network._props["_onnx"]).graph
        refused = []
        for node in graph.node:
            coords = [a.s for a in node.attribute if a.name == "coordinate_transformation_mode"]
            sizes = node.op_type == "Resize" and len(node.input) > 3 and bool(node.input[3])
            half = coords in ([], [b"half_pixel"])
            if node.op_type in ("Reciprocal", "QuantizeLinear", "DequantizeLinear") or (
                node.op_type == "Resize" and (sizes or not half)
            ):
                refused.append(node.name or node.op_type)
        if refused and "GPU_FALLBACK" not in flags:
            return f"{refused[0]} cannot run on DLA and GPU fallback is not enabled"
        for name in refused:
            self._log(builder, "WARNING", f"{name} is not supported on DLA, falling back to GPU")
        self.options["dla_fallback_layers"] = refused
        return ""

    def init_OnnxParser(self, parser: Any, bound: dict[str, Any]) -> None:
        parser._props.update(_network=bound["network"], _errors=[])

    def OnnxParser__parse(self, parser: Any, model: Any, path: Any = ANY) -> bool:
        import onnx

        try:
            proto = onnx.load_from_string(bytes(model))
        except Exception as exc:
            parser._props["_errors"].append(f"ModelImporter: cannot read the model: {exc}")
            return False
        network = parser._props["_network"]
        network._props["_onnx"] = bytes(model)
        network._props["_qdq"] = any(n.op_type == "QuantizeLinear" for n in proto.graph.node)
        inits = {t.name for t in proto.graph.initializer}
        for kind, values in (("_inputs", proto.graph.input), ("_outputs", proto.graph.output)):
            for v in values:
                if v.name in inits:
                    continue
                dims = tuple(
                    d.dim_value if d.HasField("dim_value") else -1
                    for d in v.type.tensor_type.shape.dim
                )
                dtype = (
                    "HALF" if v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT16 else "FLOAT"
                )
                network._props[kind].append(
                    self.new("ITensor", name=v.name, shape=dims, dtype=self.enum("DataType", dtype))
                )
        return True

    def OnnxParser__get_num_errors(self, parser: Any) -> int:
        return len(parser._props["_errors"])

    def OnnxParser__get_error(self, parser: Any, index: Any) -> Any:
        error = self.new("ParserError")
        object.__setattr__(error, "_text", parser._props["_errors"][int(index)])
        return error

    def INetworkDefinition__get_input(self, network: Any, index: Any) -> Any:
        return network._props["_inputs"][int(index)]

    def INetworkDefinition__get_output(self, network: Any, index: Any) -> Any:
        return network._props["_outputs"][int(index)]

    def INetworkDefinition__get_num_inputs(self, network: Any) -> int:
        return len(network._props["_inputs"])

    def IBuilderConfig__set_flag(self, config: Any, flag: Any) -> None:
        config._props["_flags"].add(flag.name)

    def IBuilderConfig__get_flag(self, config: Any, flag: Any) -> bool:
        return flag.name in config._props["_flags"]

    def IBuilderConfig__set_memory_pool_limit(self, config: Any, pool: Any, pool_size: Any) -> None:
        config._props["_pools"][pool.name] = int(pool_size)

    def IBuilderConfig__create_timing_cache(self, config: Any, serialized_timing_cache: Any) -> Any:
        return self.new("ITimingCache", _data=bytes(serialized_timing_cache))

    def IBuilderConfig__set_timing_cache(
        self, config: Any, cache: Any, ignore_mismatch: Any
    ) -> bool:
        data = cache._props["_data"]
        if data and not data.startswith(self.timing_signature) and not ignore_mismatch:
            return False
        config._props["_timing"] = cache
        return True

    def IBuilderConfig__get_timing_cache(self, config: Any) -> Any:
        return config._props["_timing"]

    def ITimingCache__serialize(self, cache: Any) -> Any:
        return self.host_memory(self.timing_signature + b" entries\n")

    def IBuilderConfig__set_calibration_profile(self, config: Any, profile: Any) -> bool:
        config._props["_calib_profile"] = profile
        return True

    def IBuilderConfig__add_optimization_profile(self, config: Any, profile: Any) -> int:
        config._props["_profiles"].append(profile)
        return len(config._props["_profiles"]) - 1

    def IOptimizationProfile__set_shape(
        self,
        profile: Any,
        input: Any,
        min: Any,
        opt: Any,
        max: Any,
    ) -> None:
        lo, mid, hi = (tuple(int(d) for d in s) for s in (min, opt, max))
        if not all(a <= b <= c for a, b, c in zip(lo, mid, hi, strict=True)):
            raise ValueError("profile dimensions must satisfy min <= opt <= max")
        profile._props["_shapes"][input] = (lo, mid, hi)

    def Builder__build_serialized_network(self, builder: Any, network: Any, config: Any) -> Any:
        flags = config._props["_flags"]
        self._log(builder, "VERBOSE", "Original: 1 layers")
        self._log(builder, "INFO", f"[MemUsageChange] Init builder kernel library: {self.gpu.name}")
        if "VERSION_COMPATIBLE" in flags and network._props["_strongly_typed"] is False:
            self._log(builder, "WARNING", "Version compatible engines run on later versions")
        if network._props["_strongly_typed"] and flags & {"FP16", "INT8", "BF16", "FP8"}:
            self.calls.append(
                "ERROR: precision flags are not allowed with a strongly typed network"
            )
            return None
        if (
            network._props.get("_qdq")
            and not network._props["_strongly_typed"]
            and "INT8" not in flags
        ):
            self.calls.append("ERROR: Q/DQ layers need BuilderFlag.INT8 in a weakly typed network")
            return None
        inputs = network._props["_inputs"]
        if not inputs:
            self.calls.append("ERROR: the network has no inputs (nothing parsed)")
            return None
        first = inputs[0]._props
        profile = None
        if -1 in first["shape"]:
            profiles = config._props["_profiles"]
            if not profiles or first["name"] not in profiles[0]._props["_shapes"]:
                self.calls.append("ERROR: dynamic input without an optimization profile")
                return None
            profile = profiles[0]._props["_shapes"][first["name"]]
        calibrator = config._props.get("int8_calibrator")
        if calibrator is not None:
            if "INT8" not in flags:
                self.calls.append("ERROR: a calibrator without BuilderFlag.INT8")
                return None
            calib_profile = config._props.get("_calib_profile") or (
                config._props["_profiles"][0] if profile is not None else None
            )
            self._calibrate(calibrator, first, calib_profile)
        on_dla = getattr(config._props.get("default_device_type"), "name", "GPU") == "DLA"
        if on_dla:
            refusal = self._dla_refusal(builder, network, config, flags, profile)
            if refusal:
                self.calls.append(f"ERROR: {refusal}")
                self._log(builder, "ERROR", refusal)
                return None
        output = network._props["_outputs"][0]._props
        header = {
            "dla_core": int(config._props["DLA_core"]) if on_dla else None,
            "version_compatible": "VERSION_COMPATIBLE" in flags,
            "detailed": getattr(config._props.get("profiling_verbosity"), "name", "") == "DETAILED",
            "version": self.version,
            "gpu": self.gpu.name,
            "input": [first["name"], list(first["shape"]), first["dtype"].name],
            "output": [output["name"], list(output["shape"]), output["dtype"].name],
            "profile": [list(p) for p in profile] if profile else None,
        }
        blob = ENGINE_MAGIC + json.dumps(header).encode() + b"\n" + network._props["_onnx"]
        return self.host_memory(blob)

    def _calibrate(self, calibrator: Any, tensor: Any, profile: Any) -> None:
        """Pull batches as TensorRT's calibration does: size, cache, then batches. An
        explicit-batch network calibrates at its input's shape, for a dynamic input the
        calibration profile's opt shape (the first profile where none is set), and reads that
        many float32 values from each pointer: a smaller buffer is an illegal access."""
        if int(calibrator.get_batch_size()) != 1:  # explicit batch: trtexec's calibrator gives 1
            self.calls.append("WARNING: get_batch_size() != 1 on an explicit-batch network")
        if calibrator.read_calibration_cache():
            self.options["calibration_batches"] = 0
            return
        shape = tuple(tensor["shape"])
        if -1 in shape:
            shape = tuple(profile._props["_shapes"][tensor["name"]][1])
        self.options["calibration_shape"] = shape
        nbytes = int(np.prod(shape)) * 4
        count = 0
        while True:
            pointers = calibrator.get_batch([tensor["name"]])
            if not pointers:
                break
            if len(pointers) != 1:
                raise RuntimeError("get_batch must return one pointer per input")
            self.gpu.view(int(pointers[0]), nbytes)  # the batch must be in device memory
            count += 1
        if count == 0:
            raise RuntimeError("the calibrator gave no batch")
        self.options["calibration_batches"] = count
        calibrator.write_calibration_cache(self.host_memory(b"TRT-fake-EntropyCalibration2\n"))

    # ---------------------------------------------------------------- runtime side
    def Runtime__deserialize_cuda_engine(self, runtime: Any, serialized_engine: Any) -> Any:
        data = bytes(serialized_engine)
        if not data.startswith(ENGINE_MAGIC):
            self.calls.append("ERROR: not a serialized engine")
            return None
        header_line, onnx_bytes = data[len(ENGINE_MAGIC) :].split(b"\n", 1)
        header = json.loads(header_line)
        dla, cores = header.get("dla_core"), int(self.options.get("dla_cores", 0))
        if dla is not None and not 0 <= int(runtime._props.get("DLA_core", -1)) < cores:
            self.calls.append("ERROR: a DLA engine needs runtime.DLA_core set to a DLA core")
            return None
        if header.get("version_compatible") and not runtime._props.get("engine_host_code_allowed"):
            self.calls.append("ERROR: a version-compatible plan needs engine_host_code_allowed")
            return None
        ours, theirs = (
            tuple(int(p) for p in v.split(".")[:2]) for v in (self.version, header["version"])
        )
        later_same_major = ours[0] == theirs[0] and ours >= theirs
        if header["version"] != self.version and not (
            header.get("version_compatible") and later_same_major
        ):  # a version-compatible plan runs on later versions of its major (lean runtime)
            self.calls.append("ERROR: the plan was built by another TensorRT version")
            return None
        return self.new("ICudaEngine", _header=header, _onnx=onnx_bytes)

    def _engine_io(self, engine: Any) -> list[tuple[str, tuple[int, ...], str, str]]:
        h = engine._props["_header"]
        dtypes = self.options["io_dtypes"]
        io = []
        for key, mode in (("input", "INPUT"), ("output", "OUTPUT")):
            name, shape, dtype = h[key]
            io.append((name, tuple(shape), dtypes.get(name, dtype), mode))
        return io

    def ICudaEngine__create_engine_inspector(self, engine: Any) -> Any:
        return self.new("EngineInspector", _engine=engine)

    def EngineInspector__get_engine_information(self, inspector: Any, format: Any) -> str:
        """The layers of the plan (the ONNX nodes here): names only unless the build asked for
        DETAILED profiling verbosity, as TensorRT does."""
        import onnx

        engine = inspector._props["_engine"]
        nodes = onnx.load_from_string(engine._props["_onnx"]).graph.node
        detailed = engine._props["_header"].get("detailed")
        layers = [{"Name": n.name or n.op_type, "LayerType": n.op_type} if detailed
                  else n.name or n.op_type for n in nodes]  # fmt: skip
        return json.dumps({"Layers": layers, "Bindings": ["rgb", "depth"]})

    def ICudaEngine__get_num_io_tensors(self, engine: Any) -> int:
        return 2

    def ICudaEngine__get_tensor_name(self, engine: Any, index: Any) -> str:
        return self._engine_io(engine)[int(index)][0]

    def _io(self, engine: Any, name: str) -> tuple[str, tuple[int, ...], str, str]:
        for io in self._engine_io(engine):
            if io[0] == name:
                return io
        raise RuntimeError(f"no tensor {name!r}")

    def ICudaEngine__get_tensor_mode(self, engine: Any, name: Any) -> Any:
        return self.enum("TensorIOMode", self._io(engine, name)[3])

    def ICudaEngine__get_tensor_shape(self, engine: Any, name: Any) -> tuple[int, ...]:
        return self._io(engine, name)[1]

    def ICudaEngine__get_tensor_dtype(self, engine: Any, name: Any) -> Any:
        return self.enum("DataType", self._io(engine, name)[2])

    def ICudaEngine__get_tensor_profile_shape(
        self, engine: Any, name: Any, profile_index: Any
    ) -> list[tuple[int, ...]]:
        profile = engine._props["_header"]["profile"]
        if profile is None or int(profile_index) != 0:
            raise RuntimeError("no such optimization profile")
        return [tuple(p) for p in profile]

    def ICudaEngine__create_execution_context(self, engine: Any, **options: Any) -> Any:
        return self.new("IExecutionContext", _engine=engine, _shapes={}, _addresses={})

    def IExecutionContext__set_input_shape(self, context: Any, name: Any, shape: Any) -> bool:
        engine = context._props["_engine"]
        profile = engine._props["_header"]["profile"]
        shape = tuple(int(d) for d in shape)
        declared = self._io(engine, name)[1]
        if len(shape) != len(declared) or any(
            d not in (-1, s) for d, s in zip(declared, shape, strict=True)
        ):
            return False
        if profile and not all(
            lo <= s <= hi for lo, s, hi in zip(profile[0], shape, profile[2], strict=True)
        ):
            return False
        context._props["_shapes"][name] = shape
        context._props["_ready"] = False  # the next enqueue does deferred setup
        return True

    def IExecutionContext__get_tensor_shape(self, context: Any, name: Any) -> tuple[int, ...]:
        engine = context._props["_engine"]
        inp = self._engine_io(engine)[0]
        given = context._props["_shapes"].get(inp[0], inp[1])
        if name == inp[0]:
            return given
        n, _, h, w = given
        return (n, 1, h // 2 if h > 0 else -1, w // 2 if w > 0 else -1)

    def IExecutionContext__set_tensor_address(self, context: Any, name: Any, memory: Any) -> bool:
        self._io(context._props["_engine"], name)
        context._props["_addresses"][name] = int(memory)
        return True

    def IExecutionContext__execute_async_v3(self, context: Any, stream_handle: Any) -> bool:
        """Queue the engine's work on the stream (run now, or recorded by a capture): the
        ONNX through ONNX Runtime, costing ``kernel_ms_per_image`` x batch of GPU time. As
        TensorRT: the first enqueue after the context is made or reshaped does deferred
        setup that a CUDA graph capture cannot record (trtexec enqueues once before
        capturing), and an engine with ops not permitted under capture
        (``capturable=False``) returns False there."""
        self.gpu.require_context("execute_async_v3")
        stream = int(stream_handle)
        if stream not in self.gpu.streams:
            raise RuntimeError(f"execute_async_v3: {stream_handle} is not a stream")
        engine = context._props["_engine"]
        (in_name, _, _, _), (out_name, _, _, _) = self._engine_io(engine)
        for name in (in_name, out_name):
            if name not in context._props["_addresses"]:
                self.calls.append(f"ERROR: no address set for {name!r}")
                return False
        in_shape = self.IExecutionContext__get_tensor_shape(context, in_name)
        if -1 in in_shape:
            self.calls.append("ERROR: input shape not specified (set_input_shape)")
            return False
        if stream in self.gpu.capturing:
            if not context._props.get("_ready") or not self.options.get("capturable", True):
                self.calls.append("ERROR: enqueue of an operation not permitted under capture")
                self.gpu.invalidated.add(stream)
                return False
        else:
            context._props["_ready"] = True
        snapshot = (dict(context._props["_addresses"]), in_shape)
        cost = float(self.options.get("kernel_ms_per_image", 0.5)) * in_shape[0]
        work = lambda: self._compute(context, *snapshot)  # noqa: E731
        self.gpu.enqueue(stream, work, cost, gap_ms=self.gpu.launch_gap_ms)
        return True

    def _compute(self, context: Any, addresses: dict[str, int], in_shape: tuple) -> None:
        """What the engine's kernels compute: the ONNX on the input buffer's bytes."""
        engine = context._props["_engine"]
        (in_name, _, in_dtype, _), (out_name, _, out_dtype, _) = self._engine_io(engine)
        out_shape = self.IExecutionContext__get_tensor_shape(context, out_name)
        out_shape = (in_shape[0], *out_shape[1:])
        np_in, np_out = self._device_type(in_dtype), self._device_type(out_dtype)
        n_in = int(np.prod(in_shape)) * np.dtype(np_in).itemsize
        raw = self.gpu.read(addresses[in_name], n_in)
        x = np.frombuffer(raw, dtype=np_in).reshape(in_shape).astype(np.float32)
        if in_dtype == "INT8":  # the engine reads codes at the scale it was built with
            x = x * self.options["io_scales"].get(in_name, 1.0)
        y = self._session(engine).run([out_name], {in_name: x})[0].reshape(out_shape)
        if out_dtype == "INT8":
            y = np.clip(np.rint(y / self.options["io_scales"].get(out_name, 1.0)), -128, 127)
        out = np.ascontiguousarray(y.astype(np_out))
        self.gpu.write(addresses[out_name], out.tobytes())
        self.gpu.launches += 1

    @staticmethod
    def _session(engine: Any) -> Any:
        """The engine's ONNX in ONNX Runtime (made once per engine)."""
        if "_session" not in engine._props:
            import onnxruntime as ort

            engine._props["_session"] = ort.InferenceSession(
                engine._props["_onnx"], providers=["CPUExecutionProvider"]
            )
        return engine._props["_session"]


def _flat(name: str) -> str:
    return name.replace(".", "_")


def _short(value: Any) -> str:
    if isinstance(value, (bytes, bytearray)):
        return f"<{len(value)} bytes>"
    if isinstance(value, FakeEnumMember):
        return f"{type(value).__qualname__}.{value.name}"
    if value is ANY:
        return "<default>"
    text = repr(value)
    return text if len(text) < 60 else text[:57] + "..."
