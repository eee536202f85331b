"""Bad input across every verb, as a user would give it: each case is refused with one line
(``error: ...``) and a non-zero exit, and every file in the folder is byte for byte what it
was. The table "Bad inputs that are tested" in docs/errors.md lists exactly these cases with
the line each gives (checked by the last test)."""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from cli import app
from densedepth.util.cpu import usable_cores

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


@dataclass(frozen=True)
class Case:
    id: str
    area: str
    what: str  # the bad input, in words (the docs table's second column)
    args: Callable[[Path, dict[str, Path]], list[str]]  # (folder, models) -> argv
    expect: str  # a fragment of the one line


def _pairs(folder: Path, rgb: np.ndarray | None = None, depth: np.ndarray | None = None) -> Path:
    """A pairs folder with one test sample (optionally a bad RGB or depth array)."""
    (folder / "test").mkdir(parents=True, exist_ok=True)
    good_rgb = np.full((32, 32, 3), 120, np.uint8)
    good_depth = np.full((32, 32), 2000, np.uint16)
    Image.fromarray(good_rgb if rgb is None else rgb).save(folder / "test" / "a_rgb.png")
    Image.fromarray(good_depth if depth is None else depth).save(folder / "test" / "a_depth.png")
    return folder


def _zip(folder: Path, members: dict[str, bytes]) -> Path:
    path = folder / "nyu_data.zip"
    with zipfile.ZipFile(path, "w") as zf:
        for name, payload in members.items():
            zf.writestr(name, payload)
    return path


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def _file(path: Path, payload: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(payload)
    return path


def _loop(path: Path) -> Path:
    path.symlink_to(path)
    return path


def _broken(path: Path) -> Path:
    path.symlink_to(path.with_name("gone"))
    return path


def _marked(folder: Path, *names: str, listed: bool = True) -> Path:
    """A folder as a verb leaves it: ``names`` and a complete marker listing them (not
    ``listed``: a marker of an older version, without the list)."""
    folder.mkdir(parents=True, exist_ok=True)
    files = f', "files": {json.dumps(sorted(names))}' if listed else ""
    (folder / ".densedepth").write_text(f'{{"tool": "densedepth", "state": "complete"{files}}}')
    for n in names:
        (folder / n).write_text("old")
    return folder


def _being_written(folder: Path) -> Path:
    """A folder whose marker says a live process (this test's parent) is writing it."""
    from densedepth.util.outputs import process_start

    folder.mkdir(parents=True, exist_ok=True)
    pid = os.getppid()
    (folder / ".densedepth").write_text(json.dumps(
        {"tool": "densedepth", "verb": "bench", "state": "writing", "pid": pid,
         "start": process_start(pid)}))  # fmt: skip
    return folder


def _ours(path: Path, payload: bytes = b"x") -> Path:
    """A single output file the toolkit wrote (in its folder's ledger)."""
    from densedepth.util.outputs import record_written

    record_written(_file(path, payload))
    return path


def _pickled(path: Path) -> Path:
    import torch

    torch.save({"model": {}, "code": Path("x")}, path)
    return path


def _foreign_pt(path: Path) -> Path:
    import torch

    torch.save({"state_dict": {"w": torch.zeros(1)}}, path)
    return path


def _foreign_onnx(path: Path) -> Path:
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 64, 64])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 64, 64])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])
    onnx.save(helper.make_model(graph), str(path))
    return path


def _bad_graph(path: Path, kind: str) -> Path:
    """An ONNX file whose graph reads an undefined tensor, or has a cycle."""
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8, 8])
    if kind == "undefined":
        nodes = [helper.make_node("Add", ["x", "ghost"], ["y"])]
    else:  # a = x + b, b = relu(a)
        nodes = [helper.make_node("Add", ["x", "b"], ["a"]), helper.make_node("Relu", ["a"], ["b"]),
                 helper.make_node("Relu", ["a"], ["y"])]  # fmt: skip
    onnx.save(helper.make_model(helper.make_graph(nodes, "g", [x], [y])), str(path))
    return path


def _relabelled(
    path: Path, source: Path, size: list[int] | None = None, nhwc: bool = False
) -> Path:
    """Our ONNX export with its metadata's input size changed, or a channels-last graph
    carrying our metadata."""
    import onnx
    from onnx import TensorProto, helper

    from densedepth.util.onnx_io import set_metadata

    model = onnx.load(str(source))
    if nhwc:
        x = helper.make_tensor_value_info("rgb", TensorProto.FLOAT, [1, 64, 64, 3])
        y = helper.make_tensor_value_info("depth", TensorProto.FLOAT, [1, 64, 64, 3])
        graph = helper.make_graph([helper.make_node("Relu", ["rgb"], ["depth"])], "g", [x], [y])
        props = list(model.metadata_props)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.metadata_props.extend(props)
    else:
        set_metadata(model, {"input_size": size})
    onnx.save(model, str(path))
    return path


def _ir(folder: Path, bin_bytes: int | None) -> Path:
    """An OpenVINO .xml (one 16-byte constant) with our sidecar, and a .bin of ``bin_bytes``
    (None: no .bin)."""
    folder.mkdir(parents=True, exist_ok=True)
    xml = _file(
        folder / "m.xml",
        b'<?xml version="1.0"?><net><layers><layer id="0" type="Const">'
        b'<data element_type="f32" shape="4" offset="0" size="16"/></layer></layers></net>',
    )
    _file(folder / "m.xml.json", b'{"input_size": [64, 64], "precision": "fp32"}')
    if bin_bytes is not None:
        _file(folder / "m.bin", b"\0" * bin_bytes)
    return xml


def _keras_nan(path: Path) -> Path:
    """A Keras save_weights file of a random DenseNet121 DenseDepth (decoder width 0.125) with
    one NaN in the first convolution's kernel."""
    import h5py
    import torch

    from densedepth.keras_import import keras_name_map
    from densedepth.model import DenseDepth

    torch.manual_seed(0)
    state = DenseDepth("densenet121", decoder_width=0.125).state_dict()
    layers: dict[str, dict[str, np.ndarray]] = {}
    for key, (layer, weight) in keras_name_map("densenet121").items():
        v = state[key].numpy()
        layers.setdefault(layer, {})[weight] = v.transpose(2, 3, 1, 0) if weight == "kernel" else v
    layers["conv1/conv"]["kernel"][0, 0, 0, 0] = np.nan
    with h5py.File(path, "w") as f:
        names = [*layers, *(f"leaky_re_lu_{i}" for i in range(1, 5))]
        f.attrs["layer_names"] = np.array([n.encode() for n in names], dtype="S")
        for layer, weights in layers.items():
            group = f.create_group(layer)
            full = [f"{layer}/{w}:0" for w in weights]
            group.attrs["weight_names"] = np.array([n.encode() for n in full], dtype="S")
            for name, v in zip(full, weights.values(), strict=True):
                group[name] = v
    return path


def _run_of(folder: Path, models: dict[str, Path], **config: object) -> Path:
    """A run folder whose last.pt is the tiny checkpoint (densenet121, decoder width 0.125,
    64x64, lr 1e-4, synthetic data), with ``config`` changed."""
    import torch

    from densedepth.checkpoint import load_checkpoint, save_checkpoint

    ckpt = load_checkpoint(models["ckpt"])
    ckpt["config"].update(config)
    ckpt["optimizer"] = torch.optim.Adam([torch.zeros(1)]).state_dict()
    (folder / "run").mkdir(parents=True, exist_ok=True)
    save_checkpoint(folder / "run" / "last.pt", ckpt)
    return folder / "run"


def _video(path: Path, frames: int) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (64, 48))
    for _ in range(frames):
        writer.write(np.zeros((48, 64, 3), np.uint8))
    writer.release()
    return path


def _csv_zip(folder: Path, row: bytes) -> Path:
    return _zip(folder, {"data/nyu2_test.csv": row, "data/nyu2_train.csv": row})


TINY = ["--backbone", "densenet121", "--weights", "none", "--input-size", "64x64",
        "--max-steps", "1", "--synthetic-train", "4", "--synthetic-test", "2"]  # fmt: skip

OTHER_MACHINE = (
    b'{"environment": {"cpu": "Some Other CPU", "cpu_capabilities": []}, "recommended": []}'
)

CASES = [
    # ---------------------------------------------------------------- data
    Case("data-missing", "data", "dataset path that does not exist",
         lambda t, m: ["inspect", str(t / "nyu_data.zip")], "does not exist"),
    Case("data-loop", "data", "dataset path that is a symbolic link loop",
         lambda t, m: ["inspect", str(_loop(t / "d.zip"))], "is a symbolic link loop"),
    Case("data-cut-zip", "data", "truncated nyu_data.zip",
         lambda t, m: ["inspect", str(_file(t / "nyu_data.zip", b"PK\x03\x04 cut"))],
         "not a readable zip archive"),
    Case("data-foreign-zip", "data", "a zip without DenseDepth's CSV files",
         lambda t, m: ["inspect", str(_zip(t, {"readme.txt": b"hi"}))],
         "neither data/nyu2_train.csv"),
    Case("data-escape", "data", "a CSV row naming ../ outside the archive",
         lambda t, m: ["inspect", str(_csv_zip(t, b"../x.png,data/d.png\n"))],
         "absolute or leaves the archive"),
    Case("data-csv-missing", "data", "a CSV row naming a member that is not there",
         lambda t, m: ["inspect", str(_csv_zip(t, b"data/a.png,data/b.png\n"))],
         "which is not in"),
    Case("data-8bit", "data", "8-bit depth PNG where 16-bit millimetres are expected",
         lambda t, m: ["inspect", str(_pairs(t, depth=np.full((32, 32), 20, np.uint8)))],
         "8-bit; expected 16-bit millimetres"),
    Case("data-gray", "data", "grayscale image as the RGB",
         lambda t, m: ["inspect", str(_pairs(t, rgb=np.full((32, 32), 9, np.uint8)))],
         "grayscale (mode L); an RGB image was expected"),
    Case("data-shape", "data", "depth map of another size than its image",
         lambda t, m: ["inspect", str(_pairs(t, depth=np.full((16, 32), 900, np.uint16)))],
         "depth is (16, 32) but RGB is (32, 32)"),
    Case("data-corrupt-png", "data", "corrupt PNG",
         lambda t, m: ["inspect", str(_file(_pairs(t) / "test" / "a_rgb.png", b"\x89PNG junk")
                                      .parents[1])],
         "corrupt or truncated"),
    Case("data-mat-v5", "data", "a labeled .mat that is not MATLAB v7.3 (HDF5)",
         lambda t, m: ["inspect", str(_file(t / "nyu_depth_v2_labeled.mat", b"\x89HDF\r\n"))],
         "not a MATLAB v7.3 (HDF5) file"),
    Case("data-no-images", "data", "a folder with nothing to read",
         lambda t, m: ["inspect", str(_file(t / "empty" / "notes.txt").parent)],
         "no dataset found"),
    # ---------------------------------------------------------------- models
    Case("model-pickled", "checkpoints", "a .pt carrying pickled objects",
         lambda t, m: ["evaluate", str(_pickled(t / "evil.pt"))],
         "pickled code or objects (pathlib.PosixPath)"),
    Case("model-foreign-pt", "checkpoints", "a .pt that is not our checkpoint",
         lambda t, m: ["evaluate", str(_foreign_pt(t / "other.pt"))],
         "is not a DenseDepth checkpoint"),
    Case("model-cut-pt", "checkpoints", "a truncated checkpoint",
         lambda t, m: ["evaluate", str(_file(t / "cut.pt", m["ckpt"].read_bytes()[:5000]))],
         "it is truncated or not a PyTorch file"),
    Case("model-suffix", "checkpoints", "a model file of an unknown type",
         lambda t, m: ["evaluate", str(_file(t / "model.h5"))], "unknown model file type"),
    Case("model-broken-link", "checkpoints", "a model path that is a broken link",
         lambda t, m: ["predict", str(_broken(t / "m.pt")), str(t)], "is a broken link"),
    Case("model-folder", "checkpoints", "a folder given as the model",
         lambda t, m: ["evaluate", str(_file(t / "d" / "x").parent)], "is a folder; pass a model"),
    Case("onnx-foreign", "ONNX / IR / engine", "an ONNX file that is not from `export`",
         lambda t, m: ["evaluate", str(_foreign_onnx(t / "f.onnx"))],
         "is not a DenseDepth export"),
    Case("onnx-cut", "ONNX / IR / engine", "a truncated ONNX file",
         lambda t, m: ["evaluate", str(_file(t / "c.onnx", m["onnx"].read_bytes()[:3000]))],
         "is not a readable ONNX file"),
    Case("onnx-check-not-onnx", "ONNX / IR / engine", "check-onnx on a file that is not ONNX",
         lambda t, m: ["check-onnx", str(_file(t / "x.onnx", b"not onnx"))],
         "is not a readable ONNX file"),
    Case("onnx-check-empty", "ONNX / IR / engine", "check-onnx on a 0-byte file",
         lambda t, m: ["check-onnx", str(_file(t / "e.onnx", b""))],
         "is not a readable ONNX model: the file is empty (0 bytes)"),
    Case("onnx-check-undefined", "ONNX / IR / engine", "check-onnx on a graph reading an "
         "undefined tensor",
         lambda t, m: ["check-onnx", str(_bad_graph(t / "u.onnx", "undefined"))],
         "reads 'ghost', which no node, graph input or initializer defines"),
    Case("onnx-check-cycle", "ONNX / IR / engine", "check-onnx on a graph with a cycle",
         lambda t, m: ["check-onnx", str(_bad_graph(t / "c.onnx", "cycle"))],
         "reads 'b' before any node writes it (a cycle, or nodes out of order)"),
    Case("onnx-layout-size", "ONNX / IR / engine", "an ONNX whose metadata names another "
         "input size than its graph",
         lambda t, m: ["evaluate", str(_relabelled(t / "s.onnx", m["onnx"], [96, 96]))],
         "its metadata says input Nx3x96x96 (NCHW) but the graph's input is 1x3x64x64"),
    Case("onnx-layout-nhwc", "ONNX / IR / engine", "an ONNX with our metadata and a channels-last "
         "input", lambda t, m: ["evaluate", str(_relabelled(t / "h.onnx", m["onnx"], nhwc=True))],
         "the graph's input is 1x64x64x3 (NHWC: channels last)"),
    Case("ir-bin-missing", "ONNX / IR / engine", "an OpenVINO .xml without its .bin",
         lambda t, m: ["evaluate", str(_ir(t / "ir", None))],
         "its weights file m.bin is missing"),
    Case("ir-bin-cut", "ONNX / IR / engine", "an OpenVINO .xml with a truncated .bin",
         lambda t, m: ["evaluate", str(_ir(t / "ir", 10))],
         "its weights file m.bin is truncated (10 bytes, the IR needs 16)"),
    Case("keras-nan", "checkpoints", "import-keras of an .h5 whose weights hold a NaN",
         lambda t, m: ["import-keras", str(_keras_nan(t / "nan.h5")), "--out", str(t / "n.pt")],
         "layer conv1/conv has non-finite weights (NaN or infinite: 1 of the 9,408 in its "
         "kernel)"),
    Case("onnx-build-not-fp32", "ONNX / IR / engine", "build-engine from a file not from export",
         lambda t, m: ["build-engine", str(_foreign_onnx(t / "f.onnx"))],
         "is not the fp32 ONNX from"),
    Case("ir-foreign", "ONNX / IR / engine", "an OpenVINO .xml not made by build-engine",
         lambda t, m: ["evaluate", str(_file(t / "m.xml", b"<?xml version='1.0'?><net/>"))],
         "has no DenseDepth sidecar"),
    Case("engine-cpu", "ONNX / IR / engine", "a TensorRT engine where TensorRT is absent",
         lambda t, m: ["evaluate", str(_file(t / "m.engine", b"\0" * 64))],
         "cannot run …/m.engine"),
    Case("trt-version", "ONNX / IR / engine", "an unparsable --trt-version",
         lambda t, m: ["check-onnx", str(m["onnx"]), "--trt-version", "ten"],
         "cannot read the TensorRT version 'ten'"),
    Case("precision-pair", "ONNX / IR / engine", "--int8 with --bf16",
         lambda t, m: ["build-engine", str(m["onnx"]), "--int8", "--bf16"],
         "choose one of --int8, --fp16, --bf16"),
    Case("report-cpu-fp16", "ONNX / IR / engine", "int8-report --fp16 of the CPU flavour",
         lambda t, m: ["int8-report", str(m["onnx"]), "--fp16", "--out", str(t / "r")],
         "--fp16 and --quantizer are for --flavour tensorrt"),
    # ---------------------------------------------------------------- calibration
    Case("calib-empty", "calibration", "a calibration folder with no readable image",
         lambda t, m: ["build-engine", str(m["onnx"]), "--int8", "--out-dir", str(t / "o"),
                       "--calib", str(_file(t / "imgs" / "a.png", b"\x89PNG bad").parent)],
         "calibration needs at least one batch"),
    Case("calib-missing", "calibration", "a calibration source that does not exist",
         lambda t, m: ["build-engine", str(m["onnx"]), "--int8", "--out-dir", str(t / "o"),
                       "--calib", str(t / "nothing")], "does not exist"),
    Case("bench-format", "calibration", "an unknown --build format",
         lambda t, m: ["bench", str(m["onnx"]), "--build", "onnx-int4"],
         "unknown format 'onnx-int4'"),
    # ---------------------------------------------------------------- camera
    Case("camera-index", "camera sources", "a camera index with no camera",
         lambda t, m: ["bench", "--camera", "--source", "7", str(m["onnx"]),
                       "--out", str(t / "o")], "cannot open camera index 7"),
    Case("camera-junk", "camera sources", "a video file that is not a video",
         lambda t, m: ["bench", "--camera", "--source", str(_file(t / "v.mp4", b"junk")),
                       str(m["onnx"]), "--out", str(t / "o")], "cannot open video"),
    Case("camera-empty", "camera sources", "a video with no frames",
         lambda t, m: ["bench", "--camera", "--source", str(_video(t / "v.avi", 0)),
                       str(m["onnx"]), "--out", str(t / "o")], "delivered no frames"),
    Case("camera-two", "camera sources", "two models in camera mode",
         lambda t, m: ["bench", "--camera", str(m["onnx"]), str(m["onnx"])],
         "--camera runs one model, got 2"),
    # ---------------------------------------------------------------- outputs
    Case("out-cwd", "output paths", "`--out .` (the current folder)",
         lambda t, m: ["bench", str(m["onnx"]), "--out", ".", "--overwrite"],
         "it is the current folder"),
    Case("out-home", "output paths", "`--out ~` (the home folder)",
         lambda t, m: ["compare", str(m["onnx"]), "--out", str(Path.home()), "--overwrite"],
         "it is the home folder"),
    Case("out-users", "output paths", "a report folder holding the user's files",
         lambda t, m: ["bench", str(m["onnx"]), "--out", str(_file(t / "r" / "mine.txt").parent),
                       "--overwrite"], "holds files this toolkit did not write"),
    Case("out-ours-no-flag", "output paths", "a report folder of ours, without --overwrite",
         lambda t, m: ["bench", str(m["onnx"]), "--out", str(_marked(t / "r", "bench.md"))],
         "already exists; pass --overwrite"),
    Case("out-input-inside", "output paths", "--overwrite of the folder holding the model",
         lambda t, m: ["bench", str(_file(_marked(t / "r") / "m.onnx", m["onnx"].read_bytes())),
                       "--out", str(t / "r"), "--overwrite"],
         "which this run would replace"),
    Case("out-is-file", "output paths", "a report folder that is a file",
         lambda t, m: ["compare", str(m["onnx"]), "--out", str(_file(t / "report"))],
         "is a file; pass a folder"),
    Case("out-under-file", "output paths", "evaluate --out under a file",
         lambda t, m: ["evaluate", str(m["ckpt"]), "--out", str(_file(t / "f") / "m.json")],
         "is a file, not a folder"),
    Case("out-json-folder", "output paths", "evaluate --out that is a folder",
         lambda t, m: ["evaluate", str(m["ckpt"]), "--out", str(_file(t / "d" / "x").parent)],
         "is a folder; give a file name"),
    Case("out-json-theirs", "output paths", "evaluate --out naming the user's JSON file",
         lambda t, m: ["evaluate", str(m["ckpt"]), "--out", str(_file(t / "n.json", b"{}"))],
         "was not written by this toolkit"),
    Case("out-folder-under-file", "output paths", "a report folder under a file",
         lambda t, m: ["predict", str(m["ckpt"]), str(_pairs(t / "in") / "test" / "a_rgb.png"),
                       "--out", str(_file(t / "f") / "pred")], "is a file, not a folder"),
    Case("out-predict-inputs", "output paths", "predict --out into the images' own folder",
         lambda t, m: ["predict", str(m["ckpt"]), str(_pairs(t) / "test"),
                       "--out", str(t / "test")], "holds files this toolkit did not write"),
    Case("out-synth-again", "output paths", "synth into a dataset it wrote, without --overwrite",
         lambda t, m: ["synth", str(_marked(t / "ds", "x")), "--test", "1"],
         "already exists; pass --overwrite"),
    Case("out-import-exists", "output paths", "import-keras onto the user's own file",
         lambda t, m: ["import-keras", str(_file(t / "nyu.h5")), "--out", str(_file(t / "n.pt"))],
         "exists and was not written by this toolkit"),
    Case("out-import-ours", "output paths", "import-keras onto its own file, without --overwrite",
         lambda t, m: ["import-keras", str(_file(t / "nyu.h5")), "--out", str(_ours(t / "n.pt"))],
         "already exists; pass --overwrite"),
    Case("out-notes", "output paths", "--overwrite of a report folder of ours holding the "
         "user's notes.md",
         lambda t, m: ["bench", str(m["onnx"]), "--overwrite", "--out",
                       str(_file(_marked(t / "r", "bench.md") / "notes.md").parent)],
         "holds files this toolkit did not write (notes.md)"),
    Case("out-unlisted", "output paths", "--overwrite of a folder whose marker lists no files",
         lambda t, m: ["bench", str(m["onnx"]), "--overwrite", "--out",
                       str(_marked(t / "r", "bench.md", listed=False))],
         "its marker does not list its files"),
    Case("out-live-writer", "output paths", "--overwrite of a folder a live process is writing",
         lambda t, m: ["bench", str(m["onnx"]), "--overwrite", "--out",
                       str(_being_written(t / "r"))], "is being written by another run (PID"),
    Case("out-export-theirs", "output paths", "export --out naming the user's notes.onnx",
         lambda t, m: ["export", str(m["ckpt"]), "--out", str(_file(t / "notes.onnx"))],
         "exists and was not written by this toolkit"),
    Case("out-export-theirs-flag", "output paths", "export --out of the user's file, "
         "--overwrite", lambda t, m: ["export", str(m["ckpt"]), "--overwrite",
                                      "--out", str(_file(t / "notes.onnx"))],
         "exists and was not written by this toolkit"),
    Case("out-export-ours", "output paths", "export --out of its own ONNX, without --overwrite",
         lambda t, m: ["export", str(m["ckpt"]), "--out", str(_ours(t / "m.onnx"))],
         "already exists; pass --overwrite"),
    Case("out-engine-theirs", "output paths", "build-engine --out-dir holding the user's own "
         "file of the name it would write",
         lambda t, m: ["build-engine", str(m["onnx"]), "--target", "onnx", "--fp16",
                       "--overwrite", "--out-dir", str(_file(t / "e" / "tiny_fp16.onnx").parent)],
         "exists and was not written by this toolkit"),
    Case("out-record-theirs", "output paths", "bench --camera --record onto the user's video",
         lambda t, m: ["bench", "--camera", "--source", str(_video(t / "in.mp4", 3)),
                       str(m["onnx"]), "--out", str(t / "o"), "--overwrite",
                       "--record", str(_file(t / "holiday.mp4"))],
         "exists and was not written by this toolkit"),
    # ---------------------------------------------------------------- options
    Case("size-not-32", "options", "--input-size 65x96",
         lambda t, m: ["demo", "--out", str(_marked(t / "r", "demo.md")), "--overwrite",
                       "--input-size", "65x96"], "not a multiple of 32"),
    Case("size-zero", "options", "--input-size 0x0",
         lambda t, m: ["export", str(m["ckpt"]), "--input-size", "0x0"],
         "both sides must be positive multiples of 32"),
    Case("size-text", "options", "--input-size abc",
         lambda t, m: ["export", str(m["ckpt"]), "--input-size", "abc"], "is not HEIGHTxWIDTH"),
    Case("decoder-width", "options", "a decoder width that leaves a layer with no channels",
         lambda t, m: ["train", *TINY, "--decoder-width", "0.01", "--out", str(t / "run")],
         "leaves a densenet121 decoder layer with no channels"),
    Case("val-split", "options", "--val-split 0.6",
         lambda t, m: ["train", *TINY, "--val-split", "0.6", "--out", str(t / "run")],
         "outside (0, 0.5]"),
    Case("val-split-name", "options", "--val-split-name val",
         lambda t, m: ["train", *TINY, "--val-data", "synthetic", "--val-split-name", "val",
                       "--out", str(t / "run")], "choose train or test"),
    Case("precision-fp16-cpu", "options", "train --precision fp16 on a CPU",
         lambda t, m: ["train", *TINY, "--device", "cpu", "--precision", "fp16",
                       "--out", str(t / "run")], "--precision fp16 needs a CUDA GPU"),
    Case("resume-empty", "options", "--resume of a folder without last.pt",
         lambda t, m: ["train", *TINY, "--resume", "--out", str(t / "run")],
         "last.pt does not exist; start without --resume"),
    Case("resume-width", "options", "--resume with another --decoder-width",
         lambda t, m: ["train", *TINY, "--resume", "--decoder-width", "0.25",
                       "--out", str(_run_of(t, m))],
         "decoder width differs: checkpoint 0.125, --decoder-width 0.25"),
    Case("resume-size", "options", "--resume with another --input-size",
         lambda t, m: ["train", *TINY, "--resume", "--decoder-width", "0.125",
                       "--input-size", "96x96", "--out", str(_run_of(t, m))],
         "input size differs: checkpoint 64x64, --input-size 96x96"),
    Case("resume-data", "options", "--resume with another --data",
         lambda t, m: ["train", *TINY, "--resume", "--decoder-width", "0.125",
                       "--out", str(_run_of(t, m, data="nyu_data.zip"))],
         "dataset differs: checkpoint 'nyu_data.zip', --data 'synthetic'"),
    Case("resume-lr", "options", "--resume with another --lr",
         lambda t, m: ["train", *TINY, "--resume", "--decoder-width", "0.125", "--lr", "0.001",
                       "--out", str(_run_of(t, m))],
         "learning rate differs: checkpoint 0.0001, --lr 0.001"),
    Case("threads-far", "options", "--threads far above the CPU count",
         lambda t, m: ["evaluate", str(m["ckpt"]), "--threads", "100000"],
         "CPUs here (over 4x); pass at most"),
    Case("auto-flags", "options", "build-engine --target auto --int8",
         lambda t, m: ["build-engine", str(m["onnx"]), "--target", "auto", "--int8",
                       "--out-dir", str(t / "e")], "--target auto chooses the format"),
    Case("auto-other-machine", "files", "--from-bench of a bench.json measured elsewhere",
         lambda t, m: ["build-engine", str(m["onnx"]), "--target", "auto", "--from-bench",
                       str(_file(t / "bench.json", OTHER_MACHINE)), "--out-dir", str(t / "e")],
         "was measured on another machine"),
    Case("batch-zero", "options", "bench --batch 0",
         lambda t, m: ["bench", str(m["onnx"]), "--batch", "0"], "batch sizes must be >= 1"),
]  # fmt: skip


def snapshot(folder: Path) -> dict[str, str]:
    """Every file below ``folder`` -> SHA-256 of its bytes (links by their target)."""
    out = {}
    for p in sorted(folder.rglob("*")):
        rel = str(p.relative_to(folder))
        if p.is_symlink():
            out[rel] = "-> " + os.readlink(p)
        elif p.is_file():
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
        elif p.is_dir():
            out[rel] = "/"
    return out


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A random tiny checkpoint and its ONNX export (checkpoint inputs that are valid)."""
    from test_export import tiny_checkpoint

    from export.onnx_export import export_onnx

    root = tmp_path_factory.mktemp("models")
    ckpt = tiny_checkpoint(root / "tiny.pt", "densenet121")
    onnx_path = Path(export_onnx(ckpt, root / "tiny_fp32.onnx")["path"])
    return {"ckpt": ckpt, "onnx": onnx_path}


def one_line(case: Case, tmp_path: Path, models: dict[str, Path]) -> str:
    """Run the case in ``tmp_path`` and return its one error line (asserting it is one)."""
    work = tmp_path / "work"
    work.mkdir()
    args = case.args(work, models)
    before = snapshot(tmp_path)
    cwd = os.getcwd()
    os.chdir(work)
    try:
        result = runner.invoke(app, args, terminal_width=300)
    finally:
        os.chdir(cwd)
        for p in tmp_path.rglob("*"):
            if p.is_dir() and not p.is_symlink():
                p.chmod(0o755)
    assert result.exit_code == 1, (args, result.exit_code, result.output)
    lines = [line for line in result.output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in result.output, result.output
    assert snapshot(tmp_path) == before, "a refused run changed the user's files"
    return errors[0].replace(str(work), "…")


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_gives_one_line_and_changes_nothing(
    case: Case, tmp_path: Path, models: dict[str, Path]
) -> None:
    line = one_line(case, tmp_path, models)
    assert case.expect in line, line


def _cli(args: list[str], **kwargs: object) -> subprocess.CompletedProcess:
    """``cli.py ARGS`` in a fresh interpreter (PYTHONIOENCODING unset)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONIOENCODING"}
    env.update(kwargs.pop("env", {}))  # type: ignore[arg-type]
    return subprocess.run([sys.executable, str(ROOT / "cli.py"), *args], env=env, text=True,
                          timeout=300, **kwargs)  # type: ignore[call-overload]  # fmt: skip


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_info_to_a_full_disk_is_one_line() -> None:
    with open("/dev/full", "w") as full:
        done = _cli(["info"], stdout=full, stderr=subprocess.PIPE)
    assert done.returncode == 1, done.stderr
    line = "error: cannot write to standard output: no space left on the device; redirect it"
    assert done.stderr.splitlines() == [f"{line} elsewhere"]


def test_c_locale_evaluate_writes_the_json_and_prints_plain_text(
    tmp_path: Path, models: dict[str, Path]
) -> None:
    # LANG=C alone turns on Python's UTF-8 mode (PEP 540); PYTHONUTF8=0 is the ASCII terminal
    # of a system where it is off
    out = tmp_path / "m.json"
    env = {"LANG": "C", "LC_ALL": "C", "PYTHONUTF8": "0"}
    done = _cli(["evaluate", str(models["ckpt"]), "--limit", "1", "--out", str(out)], env=env,
                capture_output=True)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and "UnicodeEncodeError" not in done.stderr
    assert "d1" in done.stdout and "δ" not in done.stdout
    assert json.loads(out.read_text())["n_images"] == 1


def test_evaluate_writes_the_json_before_printing_the_table(
    tmp_path: Path, models: dict[str, Path]
) -> None:
    import cli

    out = tmp_path / "m.json"
    seen = []

    def broken_print(*args: object, **kwargs: object) -> None:
        seen.append(out.exists())
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(cli.console, "print", broken_print)
        result = runner.invoke(app, ["evaluate", str(models["ckpt"]), "--limit", "1",
                                     "--out", str(out)])  # fmt: skip
    assert result.exit_code == 1 and seen == [True]
    assert json.loads(out.read_text())["n_images"] == 1


@pytest.mark.parametrize("verb", ["evaluate", "predict", "compare", "bench"])
def test_threads_far_above_the_cpus_are_refused_on_every_verb(
    verb: str, tmp_path: Path, models: dict[str, Path]
) -> None:
    args = {"predict": [str(tmp_path)], "compare": [str(models["ckpt"])]}.get(verb, [])
    far = str(5 * usable_cores())
    before = snapshot(tmp_path)
    result = runner.invoke(app, [verb, str(models["ckpt"]), *args, "--threads", far])
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "CPUs here (over 4x)" in lines[0], result.output
    assert snapshot(tmp_path) == before


def test_threads_above_the_cpus_warn_in_one_line(models: dict[str, Path]) -> None:
    over = str(usable_cores() + 1)
    result = runner.invoke(app, ["evaluate", str(models["ckpt"]), "--limit", "1",
                                 "--threads", over])  # fmt: skip
    assert result.exit_code == 0, result.output
    warns = [line for line in result.output.splitlines() if line.startswith("warning:")]
    assert len(warns) == 1 and f"--threads {over} is more than the" in warns[0]


def test_bench_records_the_sha256_of_every_file_it_measured(
    tmp_path: Path, models: dict[str, Path]
) -> None:
    from bench.harness import measured_sha256
    from densedepth.util.files import file_sha256

    out = tmp_path / "b"
    args = ["--no-accuracy", "--iters", "1", "--min-time", "0", "--warmup", "0"]
    result = runner.invoke(app, ["bench", str(models["onnx"]), *args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    (row,) = json.loads((out / "bench.json").read_text())["rows"]
    assert row["sha256"] == {models["onnx"].name: file_sha256(models["onnx"])}
    xml = _ir(tmp_path / "ir", 16)
    assert measured_sha256(xml) == {
        "m.xml": hashlib.sha256(xml.read_bytes()).hexdigest(),
        "m.bin": hashlib.sha256(b"\0" * 16).hexdigest(),
    }


def test_densedepth_protocol_reads_the_raw_output_of_checkpoints_and_onnx(
    tmp_path: Path, models: dict[str, Path]
) -> None:
    import onnx
    import torch
    from onnx import helper

    from densedepth.checkpoint import load_checkpoint, model_from_checkpoint
    from densedepth.evaluation import AUTHORS, CLAMP_FIRST, authors_predictor
    from engines import load_runner

    x = np.random.default_rng(0).random((2, 3, 64, 64), dtype=np.float32)
    net = model_from_checkpoint(load_checkpoint(models["ckpt"])).eval()
    with torch.no_grad():
        raw = net(torch.from_numpy(x)).numpy().astype(np.float64)
    assert (raw < 0).any() and (raw > 0).any()  # the random model: both signs
    with np.errstate(divide="ignore"):  # the authors' utils.predict and evaluate.py's * 10
        want = np.clip(1000.0 / raw, 10, 1000) / 1000 * 10
    for path in (models["ckpt"], models["onnx"]):
        predict, how = authors_predictor(load_runner(path, device="cpu"))
        assert how == AUTHORS, path
        np.testing.assert_allclose(predict(x), want, rtol=1e-4, atol=1e-4)
    # a graph whose conversion cannot be walked back: scored as is, and evaluate says so
    model = onnx.load(str(models["onnx"]))
    i, clip = next((i, n) for i, n in enumerate(model.graph.node) if n.op_type == "Clip")
    clipped = clip.output[0]
    clip.output[0] = clipped + "_pre"
    model.graph.node.insert(i + 1, helper.make_node("Identity", [clipped + "_pre"], [clipped]))
    opaque = tmp_path / "opaque.onnx"
    onnx.save(model, str(opaque))
    assert authors_predictor(load_runner(opaque, device="cpu"))[1] == CLAMP_FIRST
    result = runner.invoke(app, ["evaluate", str(opaque), "--protocol", "densedepth",
                                 "--limit", "4"], terminal_width=300)  # fmt: skip
    assert result.exit_code == 0, result.output
    notes = [line for line in result.output.splitlines() if line.startswith("note: ")]
    assert len(notes) == 1 and "converts to metres inside its graph (clamp first)" in notes[0]


def readme_rows() -> dict[str, tuple[str, str, str]]:
    """docs/errors.md table's rows: id -> (area, what, line)."""
    text = (ROOT / "docs" / "errors.md").read_text()
    section = text.split("### Bad inputs that are tested", 1)[1].split("\n#", 1)[0]
    rows = {}
    for m in re.finditer(r"^\| `([a-z0-9-]+)` \| (.+?) \| (.+?) \| `(.+)` \|$", section, re.M):
        rows[m.group(1)] = (m.group(2), m.group(3), m.group(4))
    return rows


def test_the_readme_lists_every_case_with_its_line() -> None:
    rows = readme_rows()
    assert sorted(rows) == sorted(c.id for c in CASES)
    for c in CASES:
        area, what, line = rows[c.id]
        assert (area, what) == (c.area, c.what), c.id
        assert c.expect in line, (c.id, line)
