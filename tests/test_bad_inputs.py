"""Bad input across every verb, as a user would give it: each case is refused with one line
(``error: ...``) and a non-zero exit, and every file in the folder is byte for byte what it
was. The README's table "Bad inputs that are tested" lists exactly these cases with the line
each gives (checked by the last test)."""

from __future__ import annotations

import hashlib
import io
import os
import re
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

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


@dataclass(frozen=True)
class Case:
    id: str
    area: str
    what: str  # the bad input, in words (the README's second column)
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


def _marked(folder: Path, *names: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / ".densedepth").write_text('{"tool": "densedepth", "state": "complete"}')
    for n in names:
        (folder / n).write_text("old")
    return folder


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
    Case("out-import-exists", "output paths", "import-keras onto an existing file",
         lambda t, m: ["import-keras", str(_file(t / "nyu.h5")), "--out", str(_file(t / "n.pt"))],
         "already exists; pass --overwrite"),
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


def readme_rows() -> dict[str, tuple[str, str, str]]:
    """The README table's rows: id -> (area, what, line)."""
    text = (ROOT / "README.md").read_text()
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
