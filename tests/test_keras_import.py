"""The authors' Keras DenseDepth imported exactly, proven against Keras itself.

``tests/keras_reference.py`` rebuilds the released architecture with TensorFlow + tf_keras in a
separate environment (``KERAS_PYTHON``; ``make test`` creates ``.venv-keras``), randomises every
weight, saves the HDF5 file as Keras does and predicts; the import must give the same outputs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from cli import app
from densedepth.checkpoint import load_checkpoint, model_from_checkpoint
from densedepth.data.preprocess import rgb_to_input
from densedepth.data.readers import decode_rgb, open_dataset
from densedepth.data.writers import encode_png
from densedepth.keras_import import import_keras
from densedepth.util.errors import DenseDepthError
from engines import load_runner
from export.onnx_export import export_onnx

HERE = Path(__file__).resolve().parent
KERAS_PYTHON = os.environ.get("KERAS_PYTHON", "")
SIZE = (96, 128)
cli = CliRunner()

needs_keras = pytest.mark.skipif(
    not (KERAS_PYTHON and Path(KERAS_PYTHON).is_file()),
    reason="needs TensorFlow + tf_keras: set KERAS_PYTHON (make test creates .venv-keras)",
)


def reference_inputs() -> np.ndarray:
    """Real NYU RGB frames where ../shared is present, synthetic scenes otherwise (NHWC)."""
    folder = Path(os.environ.get("NYU_SAMPLES_DIR", "")) / "rgb"
    files = sorted(folder.glob("*.png"))[:2] if folder.is_dir() else []
    if files:
        rgbs = [decode_rgb(f.read_bytes(), f.name) for f in files]
    else:
        data = open_dataset("synthetic", "test", n=2, height=SIZE[0], width=SIZE[1], seed=4)
        rgbs = [data[i][0] for i in range(2)]
    x = np.concatenate([rgb_to_input(rgb, SIZE) for rgb in rgbs])  # NCHW in [0, 1]
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1))


def keras_model(root: Path, name: str, *args: str) -> tuple[Path, Path]:
    """Run the Keras reference; returns (the .h5 file, its predictions .npy)."""
    h5, out = root / f"{name}.h5", root / f"{name}.npy"
    cmd = [KERAS_PYTHON, str(HERE / "keras_reference.py"), "--out", str(h5),
           "--inputs", str(root / "inputs.npy"), "--outputs", str(out), *args]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return h5, out


@pytest.fixture(scope="module")
def keras_files(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("keras")
    np.save(root / "inputs.npy", reference_inputs())
    cases = {
        "d169_released": ("--backbone", "densenet169"),
        "d121_released": ("--backbone", "densenet121", "--seed", "1"),
        "d169_head": ("--backbone", "densenet169", "--variant", "head", "--seed", "2"),
        "d121_weights_only": ("--backbone", "densenet121", "--seed", "1", "--weights-only"),
    }
    return {"root": root, **{name: keras_model(root, name, *args) for name, args in cases.items()}}


def torch_outputs(checkpoint: Path, inputs: np.ndarray) -> np.ndarray:
    model = model_from_checkpoint(checkpoint).eval()
    with torch.no_grad():
        y = model(torch.from_numpy(np.ascontiguousarray(inputs.transpose(0, 3, 1, 2))))
    return y.numpy().transpose(0, 2, 3, 1)


@needs_keras
@pytest.mark.slow
@pytest.mark.parametrize(
    ("case", "backbone", "width", "preset"),
    [
        ("d169_released", "densenet169", 1.0, "keras-released"),
        ("d121_released", "densenet121", 1.0, "keras-released"),
        ("d169_head", "densenet169", 0.5, "keras-head"),
        ("d121_weights_only", "densenet121", 1.0, "keras-released"),
    ],
)
def test_import_matches_keras(
    keras_files: dict, tmp_path: Path, case: str, backbone: str, width: float, preset: str
) -> None:
    h5, expected = keras_files[case]
    record = import_keras(h5, tmp_path / "m.pt")
    assert (record["backbone"], record["decoder_width"], record["variant"]) == (
        backbone, width, preset,
    )  # fmt: skip
    inputs = np.load(keras_files["root"] / "inputs.npy")
    got, want = torch_outputs(tmp_path / "m.pt", inputs), np.load(expected)
    assert got.shape == want.shape == (2, SIZE[0] // 2, SIZE[1] // 2, 1)
    rel = np.abs(got - want).max() / np.abs(want).max()
    assert rel <= 1e-4, f"max relative difference {rel:.2e}"
    ckpt = load_checkpoint(tmp_path / "m.pt")
    assert ckpt["source"]["sha256"] == record["sha256"] and ckpt["config"]["input_size"] == [
        480,
        640,
    ]
    assert ckpt["source"]["saved_with"] == (
        "save_weights" if "weights_only" in case else "model.save"
    )


@needs_keras
@pytest.mark.slow
def test_imported_model_deploys_in_metres(keras_files: dict, tmp_path: Path) -> None:
    h5, expected = keras_files["d121_released"]
    ckpt = tmp_path / "nyu.pt"
    result = cli.invoke(app, ["import-keras", str(h5), "--out", str(ckpt)], terminal_width=200)
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert "densenet121, decoder width 1, keras-released, nyu depth range" in said
    # the deployable graph converts with the file's own numerator and clamp: 10 / out, 0.1..10 m
    record = export_onnx(ckpt, tmp_path / "nyu.onnx", input_size=SIZE)
    assert record["variant"]["preset"] == "keras-released" and record["depth_numerator"] == 10.0
    inputs = np.load(keras_files["root"] / "inputs.npy")
    depth = load_runner(tmp_path / "nyu.onnx", device="cpu")(inputs.transpose(0, 3, 1, 2).copy())
    keras_depth = 10.0 / np.clip(np.load(expected), 1.0, 100.0)
    np.testing.assert_allclose(depth[:, 0], keras_depth[..., 0], rtol=1e-4, atol=1e-4)
    # kitti: 80 / out over 1..80 m, at KITTI's 384x1248
    kitti = tmp_path / "kitti.pt"
    import_keras(h5, kitti, "kitti")
    config = load_checkpoint(kitti)["config"]
    assert config["input_size"] == [384, 1248] and config["variant"]["depth"]["numerator"] == 80.0
    # rows of published weights say so, through export too
    from bench.compare import model_label

    for model in (ckpt, tmp_path / "nyu.onnx"):
        label = model_label(load_runner(model, device="cpu"), model)
        assert label.startswith("densenet121 (published Keras d121_released.h5"), label
    # the verbs work on it like on any checkpoint
    for protocol in ("densedepth", "eigen"):
        args = ["evaluate", str(ckpt), "--limit", "4", "--device", "cpu", "--protocol", protocol]
        result = cli.invoke(app, args, terminal_width=200)
        assert result.exit_code == 0, result.output
    image = tmp_path / "frame.png"
    rgb = (np.load(keras_files["root"] / "inputs.npy")[0] * 255).round().astype(np.uint8)
    image.write_bytes(encode_png(rgb))
    result = cli.invoke(app, ["predict", str(ckpt), str(image), "--out", str(tmp_path / "p")])
    assert result.exit_code == 0 and (tmp_path / "p" / "frame_depth.png").is_file(), result.output
    args = ["build-engine", str(tmp_path / "nyu.onnx"), "--int8", "--calib", "synthetic",
            "--calib-images", "4"]  # fmt: skip
    # the INT8 budget holds out images of the training data, which is not here: one line
    result = cli.invoke(app, args, terminal_width=200)
    assert result.exit_code == 1 and "cannot be opened here" in result.output, result.output
    assert "--val-data PATH" in result.output and not (tmp_path / "nyu_int8.onnx").exists()
    result = cli.invoke(app, [*args, "--no-budget"], terminal_width=200)
    assert result.exit_code == 0 and (tmp_path / "nyu_int8.onnx").is_file(), result.output


@needs_keras
@pytest.mark.slow
def test_bad_keras_files_are_one_line_and_write_nothing(keras_files: dict, tmp_path: Path) -> None:
    h5, _ = keras_files["d121_released"]
    root = keras_files["root"]
    classifier, _ = keras_model(root, "classifier", "--classifier")

    def copy(name: str) -> Path:
        target = tmp_path / f"{name}.h5"
        shutil.copy(h5, target)
        return target

    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(h5.read_bytes()[: h5.stat().st_size // 2])
    not_keras = tmp_path / "plain.h5"
    with h5py.File(not_keras, "w") as f:
        f["x"] = np.zeros(3)
    nearest = copy("nearest")
    with h5py.File(nearest, "r+") as f:
        config = f.attrs["model_config"]
        text = config.decode() if isinstance(config, bytes) else config
        f.attrs["model_config"] = text.replace('"BilinearUpSampling2D"', '"UpSampling2D"')
    missing = copy("missing")
    with h5py.File(missing, "r+") as f:
        del f["model_weights/up2_convB"]
    reshaped = copy("reshaped")
    with h5py.File(reshaped, "r+") as f:
        kernel = f["model_weights/conv3/conv3/kernel:0"]
        shape = kernel.shape
        del f["model_weights/conv3/conv3/kernel:0"]
        f["model_weights/conv3/conv3/kernel:0"] = np.zeros((*shape[:3], 2), np.float32)
    extra = copy("extra")
    with h5py.File(extra, "r+") as f:
        group = f["model_weights"].create_group("side_head")
        group.attrs["weight_names"] = [b"side_head/kernel:0"]
        group["side_head/kernel:0"] = np.zeros((3, 3), np.float32)
        names = [
            n if isinstance(n, bytes) else n.encode()
            for n in f["model_weights"].attrs["layer_names"]
        ]
        f["model_weights"].attrs["layer_names"] = np.array([*names, b"side_head"], dtype="S")
    cases = [
        (tmp_path / "absent.h5", "does not exist"),
        (truncated, "not a readable HDF5 file"),
        (not_keras, "not a Keras model file"),
        (classifier, "image classifier"),
        (nearest, "not the custom BilinearUpSampling2D"),
        (missing, "up2_convB/kernel"),
        (reshaped, "conv3/kernel has shape (3, 3, "),
        (extra, "layer 'side_head'"),
    ]
    for source, message in cases:
        out = tmp_path / "out.pt"
        result = cli.invoke(app, ["import-keras", str(source), "--out", str(out)])
        assert result.exit_code == 1 and message in result.output, (source, result.output)
        assert "Traceback" not in result.output and not out.exists()
    with pytest.raises(DenseDepthError, match="unknown dataset"):
        import_keras(h5, tmp_path / "x.pt", "make3d")
    taken = tmp_path / "taken.pt"
    taken.write_text("someone's file")
    for flag in ([], ["--overwrite"]):  # never replaced, with or without --overwrite
        result = cli.invoke(app, ["import-keras", str(h5), "--out", str(taken), *flag])
        assert result.exit_code == 1 and "not written by this toolkit" in result.output
    assert taken.read_text() == "someone's file"
