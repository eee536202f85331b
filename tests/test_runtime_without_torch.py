"""The runtime install: predict, evaluate, bench and bench --camera on an ONNX file work in a
process where importing torch or torchvision fails (as on a device with only ONNX Runtime);
verbs that need torch say which extra to install, in one line."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from densedepth.data.video import write_synthetic_video
from densedepth.data.writers import write_synthetic
from densedepth.util.onnx_io import read_metadata

ROOT = Path(__file__).resolve().parents[1]

# Runs cli.main(argv) with torch and torchvision unimportable, then reports whether any module
# of theirs got loaded anyway (it cannot: the finder refuses them first).
DRIVER = """
import json, sys
class NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "torchvision"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, NoTorch())
sys.path.insert(0, sys.argv[1])
import cli
code = 0
try:
    cli.main(sys.argv[2:])
except SystemExit as exc:
    code = exc.code or 0
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "torchvision"))
print(json.dumps({"code": code, "loaded": loaded}))
"""


def run_without_torch(home: Path, *argv: str) -> tuple[int, str, list[str]]:
    """Exit code, stdout + stderr and torch modules loaded, of ``cli.py argv`` without torch
    (``home``: the process's HOME, where ONNX Runtime and matplotlib keep their caches)."""
    proc = subprocess.run(
        [sys.executable, "-c", DRIVER, str(ROOT), *argv],
        capture_output=True,
        text=True,
        timeout=600,
        env={"PATH": "/usr/bin:/bin", "HOME": str(home), "PYTHONHASHSEED": "0"},
    )
    last = json.loads(proc.stdout.strip().splitlines()[-1])
    return last["code"], proc.stdout + proc.stderr, last["loaded"]


@pytest.fixture(scope="module")
def runtime_inputs(trained_tiny: dict, tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("runtime")
    data = write_synthetic(root / "pairs", "pairs", n_train=0, n_test=4, height=64, width=64)
    video = write_synthetic_video(root / "walk.mp4", 6, 64, 64)
    return {"onnx": str(trained_tiny["onnx"]), "data": str(data), "video": str(video),
            "image": str(data / "test" / "00000_rgb.png"), "root": root}  # fmt: skip


@pytest.mark.slow
def test_runtime_verbs_run_on_onnx_without_torch(runtime_inputs: dict) -> None:
    r = runtime_inputs
    out = r["root"]
    verbs = [
        ["predict", r["onnx"], r["image"], "--out", str(out / "pred")],
        ["evaluate", r["onnx"], "--data", r["data"], "--out", str(out / "m.json")],
        [
            "bench",
            r["onnx"],
            "--data",
            r["data"],
            "--out",
            str(out / "bench"),
            "--iters",
            "3",
            "--min-time",
            "0",
            "--warmup",
            "1",
        ],
        ["bench", "--camera", "--source", r["video"], r["onnx"], "--out", str(out / "cam")],
        ["compare", r["onnx"], r["onnx"], "--data", r["data"], "--out", str(out / "cmp")],
    ]
    for argv in verbs:
        code, text, loaded = run_without_torch(out / "home", *argv)
        assert code == 0 and not loaded, (argv, text)
        assert "Traceback" not in text, text
    assert (out / "pred" / "00000_rgb_depth.png").is_file()
    assert json.loads((out / "m.json").read_text())["delta1"] > 0
    rows = json.loads((out / "bench" / "bench.json").read_text())["rows"]
    assert [row["status"] for row in rows] == ["ok"] and "delta1" in rows[0]
    assert json.loads((out / "cam" / "camera.json").read_text())["frames"] == 6
    assert (out / "cmp" / "compare.png").is_file()


def test_verbs_that_need_torch_say_which_extra(runtime_inputs: dict) -> None:
    for argv in (["train", "--data", "synthetic", "--out", str(runtime_inputs["root"] / "t")],
                 ["export", str(runtime_inputs["root"] / "x.pt")]):  # fmt: skip
        code, text, _ = run_without_torch(runtime_inputs["root"] / "home", *argv)
        assert code == 1, text
        assert "error: this needs PyTorch" in text and "[train]" in text, text
        assert "Traceback" not in text and len(text.strip().splitlines()) == 2, text


@pytest.mark.slow
def test_build_engine_from_onnx_runs_without_torch(runtime_inputs: dict) -> None:
    """Every build from an ONNX file (ONNX FP16 / INT8, OpenVINO, TensorRT's Q/DQ ONNX with
    --onnx-only) runs where torch cannot be imported, as on the device an engine is built on;
    the INT8 calibration data defaults to the training data the ONNX records."""
    r, out = runtime_inputs, runtime_inputs["root"] / "builds"
    onnx_file = r["onnx"]
    assert read_metadata(onnx_file)["training_data"] == "synthetic"  # written at export
    builds = [
        (["--target", "onnx", "--fp16"], "model_fp16.onnx"),
        (["--target", "onnx", "--int8", "--calib-images", "4"], "model_int8.onnx"),
        (["--target", "tensorrt", "--int8", "--fp16", "--onnx-only", "--quantizer",
          "onnxruntime", "--calib-images", "4"], "model_int8_fp16_trt.onnx"),
    ]  # fmt: skip
    if importlib.util.find_spec("openvino") is not None:
        builds.append((["--target", "openvino"], "model_fp32.xml"))
    said = {}
    for flags, name in builds:
        argv = ["build-engine", onnx_file, *flags, "--out-dir", str(out)]
        code, said[name], loaded = run_without_torch(r["root"] / "home", *argv)
        assert code == 0 and not loaded, (argv, said[name])
        assert (out / name).is_file() and f"saved {out / name} (" in said[name], said[name]
        assert "Traceback" not in said[name], said[name]
    assert "calibration: 4 images from synthetic" in said["model_int8.onnx"]
    assert read_metadata(out / "model_int8_fp16_trt.onnx")["precision"] == "int8"


def test_int8_build_of_an_old_onnx_without_torch_asks_for_calib(runtime_inputs: dict) -> None:
    """An ONNX exported before the training data was recorded: without torch its checkpoint
    cannot be read, so the default calibration source is refused in one line."""
    import onnx

    root = runtime_inputs["root"] / "old"
    root.mkdir()
    model = onnx.load(runtime_inputs["onnx"])
    kept = [p for p in model.metadata_props if not p.key.endswith("training_data")]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    old = root / "model_fp32.onnx"
    onnx.save(model, str(old))
    shutil.copy(runtime_inputs["onnx"] + ".json", str(old) + ".json")  # names its checkpoint
    argv = ["build-engine", str(old), "--int8", "--calib-images", "4"]
    code, text, _ = run_without_torch(runtime_inputs["root"] / "home", *argv)
    assert code == 1 and "no --calib given" in text and "--calib" in text, text
    assert len(text.strip().splitlines()) == 2 and not (root / "model_int8.onnx").exists(), text
