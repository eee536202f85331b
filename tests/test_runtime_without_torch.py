"""The runtime install: predict, evaluate, bench and bench --camera on an ONNX file work in a
process where importing torch or torchvision fails (as on a device with only ONNX Runtime);
verbs that need torch say which extra to install, in one line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from densedepth.data.video import write_synthetic_video
from densedepth.data.writers import write_synthetic

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
