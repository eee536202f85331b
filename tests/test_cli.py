"""The command line through typer's CliRunner, bad input included."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from cli import app

runner = CliRunner()


def test_info_lists_both_backbones_with_parameter_counts() -> None:
    result = runner.invoke(app, ["info"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "42,657,689" in result.output and "18,991,425" in result.output
    assert "transition2 /16 256" in result.output


def test_synth_then_inspect(tmp_path: Path) -> None:
    args = ["synth", str(tmp_path), "--format", "nyu-test-zip", "--test", "2"]
    result = runner.invoke(app, [*args, "--height", "32", "--width", "32"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "nyu_test.zip").is_file()
    grid = tmp_path / "grid.png"
    result = runner.invoke(
        app, ["inspect", str(tmp_path / "nyu_test.zip"), "--grid", str(grid)], terminal_width=200
    )
    assert result.exit_code == 0, result.output
    assert "2 samples" in result.output and grid.is_file()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["inspect", "/no/such/data"], "does not exist"),
        (["inspect", "synthetic", "--split", "val"], "Invalid value"),
        (["synth", "x", "--format", "tfrecord"], "Invalid value"),
        (["synth", "x", "--test", "0"], "Invalid value"),
    ],
)
def test_bad_input_is_one_line_and_non_zero(args: list[str], message: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output


def test_our_errors_print_one_line_without_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"PK\x03\x04 truncated")
    result = runner.invoke(app, ["inspect", str(bad)])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "not a readable zip" in lines[0]


def test_demo_refuses_a_users_folder_and_checks_sizes_before_touching_output(
    tmp_path: Path,
) -> None:
    (tmp_path / "keep.txt").write_text("precious")
    for extra in ([], ["--overwrite"]):
        result = runner.invoke(app, ["demo", "--out", str(tmp_path), *extra])
        assert result.exit_code == 1 and "holds files this toolkit did not write" in result.output
    report = tmp_path / "report"
    report.mkdir()
    (report / ".densedepth").write_text('{"tool": "densedepth", "state": "complete"}')
    (report / "demo.md").write_text("the old report")
    args = ["demo", "--out", str(report), "--overwrite", "--input-size", "65x96"]
    result = runner.invoke(app, args)
    assert result.exit_code == 1 and "multiple of 32" in result.output, result.output
    assert (tmp_path / "keep.txt").read_text() == "precious"
    assert (report / "demo.md").read_text() == "the old report"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt", "report"]


def test_synth_refuses_an_existing_dataset_unless_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "data"
    args = ["synth", str(out), "--train", "1", "--test", "1", "--height", "32", "--width", "32"]
    assert runner.invoke(app, args).exit_code == 0
    first = sorted(p.name for p in (out / "test").iterdir())
    result = runner.invoke(app, [*args, "--seed", "5"])
    assert result.exit_code == 1 and "already exists; pass --overwrite" in result.output
    result = runner.invoke(app, [*args, "--format", "nyu-test-zip", "--overwrite"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == [".densedepth", "nyu_test.zip"]
    assert first  # the pairs it replaced were its own


def test_unexpected_errors_are_one_line_and_debug_shows_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    import cli

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("something inside went wrong\nsecond line")

    monkeypatch.setattr(cli, "open_dataset", broken)
    result = runner.invoke(app, ["inspect", "synthetic"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert lines == ["error: RuntimeError: something inside went wrong (unexpected; "
                     "`cli.py --debug ...` shows where)"]  # fmt: skip
    result = runner.invoke(app, ["--debug", "inspect", "synthetic"])
    assert isinstance(result.exception, RuntimeError)

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "x.png"))

    monkeypatch.setattr(cli, "open_dataset", full)
    cli.DEBUG["on"] = False
    result = runner.invoke(app, ["inspect", "synthetic"])
    assert result.exit_code == 1
    assert result.output.strip() == (
        f"error: {tmp_path / 'x.png'}: no space left on the device; free space or choose "
        f"another --out"
    )


TINY_TRAIN = [
    "--weights",
    "none",
    "--decoder-width",
    "0.125",
    "--input-size",
    "64x64",
    "--batch-size",
    "2",
    "--max-steps",
    "2",
    "--synthetic-train",
    "4",
    "--synthetic-test",
    "4",
    "--val-samples",
    "2",
    "--device",
    "cpu",
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two tiny runs through ``cli.py train``: one per backbone."""
    root = tmp_path_factory.mktemp("runs")
    paths = {}
    for backbone in ("densenet121", "densenet169"):
        out = root / backbone
        args = ["train", "--backbone", backbone, *TINY_TRAIN, "--out", str(out)]
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        assert "done: 2 steps" in result.output
        paths[backbone] = out / "best.pt"
    return paths


def test_train_writes_the_run_folder(trained: dict[str, Path]) -> None:
    run = trained["densenet121"].parent
    for name in ("config.json", "last.pt", "best.pt", "history.jsonl", "summary.json"):
        assert (run / name).is_file(), name
    config = json.loads((run / "config.json").read_text())
    assert config["backbone"] == "densenet121" and config["input_size"] == [64, 64]
    assert config["lr"] == 1e-4 and config["betas"] == [0.9, 0.999]


def test_evaluate_prints_the_six_metrics_and_writes_json(
    trained: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "metrics.json"
    args = ["evaluate", str(trained["densenet121"]), "--limit", "3", "--out", str(out)]
    result = runner.invoke(app, [*args, "--device", "cpu"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert all(k in result.output for k in ("δ1", "δ2", "δ3", "rel", "rms", "log10"))
    row = json.loads(out.read_text())
    assert row["n_images"] == 3 and 0 <= row["delta1"] <= row["delta2"] <= row["delta3"] <= 1
    assert row["rms"] > 0 and row["rel"] > 0


def test_evaluate_densedepth_protocol_matches_the_library(
    trained: dict[str, Path], tmp_path: Path
) -> None:
    from densedepth.data.readers import open_dataset
    from densedepth.evaluation import evaluate_dataset
    from engines import load_runner

    out = tmp_path / "m.json"
    args = ["evaluate", str(trained["densenet169"]), "--protocol", "densedepth"]
    result = runner.invoke(app, [*args, "--limit", "4", "--device", "cpu", "--out", str(out)])
    assert result.exit_code == 0, result.output
    model = load_runner(trained["densenet169"], device="cpu")
    expected = evaluate_dataset(
        model, open_dataset("synthetic", "test"), (64, 64), protocol="densedepth", limit=4
    )
    got = json.loads(out.read_text())
    for key in ("delta1", "rel", "rms", "log10"):
        assert got[key] == pytest.approx(expected[key], rel=1e-6), key


def test_predict_writes_uint16_millimetres_and_jet(
    trained: dict[str, Path], tmp_path: Path
) -> None:
    from densedepth.data.readers import open_dataset

    images = tmp_path / "images"
    images.mkdir()
    rgb, _ = open_dataset("synthetic", "test", n=1, height=48, width=80)[0]
    cv2.imwrite(str(images / "room.png"), rgb[..., ::-1])
    (images / "notes.txt").write_text("not an image; folders keep only images")
    out = tmp_path / "pred"
    args = ["predict", str(trained["densenet121"]), str(images), "--out", str(out)]
    result = runner.invoke(app, [*args, "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert (out / ".densedepth").is_file()
    depth = cv2.imread(str(out / "room_depth.png"), cv2.IMREAD_UNCHANGED)
    jet = cv2.imread(str(out / "room_depth_jet.png"), cv2.IMREAD_UNCHANGED)
    assert depth.dtype == np.uint16 and depth.shape == (48, 80)
    assert depth.min() >= 100 and depth.max() <= 10_000  # clamped to 0.1..10 m
    assert jet.dtype == np.uint8 and jet.shape == (48, 80, 3)


def test_predict_never_overwrites_a_users_file_and_keeps_clashing_names_apart(
    trained: dict[str, Path], tmp_path: Path
) -> None:
    from densedepth.data.readers import open_dataset

    images = tmp_path / "images"
    (images / "b").mkdir(parents=True)
    rgb, depth = open_dataset("synthetic", "test", n=1, height=32, width=32)[0]
    cv2.imwrite(str(images / "room.png"), rgb[..., ::-1])
    cv2.imwrite(str(images / "b" / "room.png"), rgb[..., ::-1])
    cv2.imwrite(str(images / "room.jpg"), rgb[..., ::-1])
    cv2.imwrite(str(images / "room_depth.png"), (depth * 1000).astype(np.uint16))  # the user's
    before = {p: p.read_bytes() for p in images.rglob("*") if p.is_file()}
    model = str(trained["densenet121"])
    result = runner.invoke(app, ["predict", model, str(images), "--out", str(images)])
    assert result.exit_code == 1 and "holds files this toolkit did not write" in result.output
    out = tmp_path / "pred"
    inputs = [str(images / "room.png"), str(images / "b" / "room.png"), str(images / "room.jpg")]
    result = runner.invoke(app, ["predict", model, *inputs, "--out", str(out), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in out.glob("*_depth.png"))
    assert names == ["b__room_png_depth.png", "room_jpg_depth.png", "room_png_depth.png"]
    result = runner.invoke(app, ["predict", model, *inputs, "--out", str(out)])
    assert result.exit_code == 1 and "--overwrite" in result.output
    assert {p: p.read_bytes() for p in images.rglob("*") if p.is_file()} == before


def test_evaluate_refuses_a_foreign_out_file_before_evaluating(
    trained: dict[str, Path], tmp_path: Path
) -> None:
    theirs = tmp_path / "notes.json"
    theirs.write_text('{"mine": true}')
    args = ["evaluate", str(trained["densenet121"]), "--limit", "1", "--out", str(theirs)]
    result = runner.invoke(app, args)
    assert result.exit_code == 1 and "was not written by this toolkit" in result.output
    assert theirs.read_text() == '{"mine": true}'
    result = runner.invoke(app, [*args[:-1], str(tmp_path)])
    assert result.exit_code == 1 and "is a folder; give a file name" in result.output


def test_compare_writes_report_and_figure(trained: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "cmp"
    models = [str(trained["densenet169"]), str(trained["densenet121"])]
    args = ["compare", *models, "--limit", "4", "--images", "2", "--out", str(out)]
    result = runner.invoke(app, [*args, "--device", "cpu"], terminal_width=200)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert [r["path"] for r in report["measured"]] == models
    assert report["published"][0]["delta1"] == 0.846
    text = (out / "report.md").read_text()
    assert "densenet169" in text and "densenet121" in text and "published" in text
    figure = cv2.imread(str(out / "compare.png"))
    assert figure is not None and figure.shape[0] > 2 * 64  # two image rows and more


def test_train_resume_with_the_other_backbone_names_both(
    trained: dict[str, Path], tmp_path: Path
) -> None:
    run = tmp_path / "run"
    shutil.copytree(trained["densenet121"].parent, run)
    args = ["train", "--backbone", "densenet169", *TINY_TRAIN, "--out", str(run), "--resume"]
    result = runner.invoke(app, args)
    assert result.exit_code == 1
    assert "densenet121" in result.output and "densenet169" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "--backbone", "resnet50"], "Invalid value"),
        (["train", "--input-size", "65x64", "--out", "{tmp}/r"], "multiple of 32"),
        (["train", "--input-size", "big", "--out", "{tmp}/r"], "HEIGHTxWIDTH"),
        (
            ["train", "--data", "{tmp}/missing.zip", "--weights", "none", "--out", "{tmp}/r"],
            "does not exist",
        ),
        (["evaluate", "{tmp}/none.pt"], "does not exist"),
        (["evaluate", "{tmp}/model.tflite"], "unknown model file type"),
        (["evaluate", "{tmp}/junk.pt"], "error:"),
        (["predict", "{tmp}/junk.pt", "{tmp}"], "error:"),
        (["compare", "{tmp}/junk.pt", "{tmp}/junk.pt"], "error:"),
    ],
)
def test_bad_model_and_training_input(tmp_path: Path, args: list[str], message: str) -> None:
    (tmp_path / "junk.pt").write_bytes(b"this is not a checkpoint")
    (tmp_path / "model.tflite").write_bytes(b"\0")
    result = runner.invoke(app, [a.replace("{tmp}", str(tmp_path)) for a in args])
    assert result.exit_code != 0, result.output
    assert message in result.output
    assert "Traceback" not in result.output


def test_predict_refuses_a_non_image_file(trained: dict[str, Path], tmp_path: Path) -> None:
    bad = tmp_path / "photo.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n broken")
    result = runner.invoke(app, ["predict", str(trained["densenet121"]), str(bad)])
    assert result.exit_code == 1 and "photo.png" in result.output
    assert "Traceback" not in result.output


def test_missing_inputs_say_the_real_cause(tmp_path: Path) -> None:
    from densedepth.util.errors import missing_reason

    loop = tmp_path / "loop.pt"
    loop.symlink_to(loop)
    broken = tmp_path / "broken.pt"
    broken.symlink_to(tmp_path / "gone.pt")
    (tmp_path / "file").write_text("x")
    assert missing_reason(loop) == "is a symbolic link loop"
    assert missing_reason(broken) == f"is a broken link (to {tmp_path / 'gone.pt'})"
    assert missing_reason(tmp_path / "nothing.pt") == "does not exist"
    assert missing_reason(tmp_path) == "is a folder, not a file"
    assert missing_reason(tmp_path / "file" / "x.pt").startswith("does not exist (a part")
    for args, line in (
        (["evaluate", str(loop)], f"error: model file {loop} is a symbolic link loop"),
        (["compare", str(broken)], f"error: model {broken} is a broken link"),
        (["inspect", str(loop)], f"error: dataset {loop} is a symbolic link loop"),
        (["export", "x.pt", "--input-size", "0x0"], "both sides must be positive multiples"),
    ):
        result = runner.invoke(app, args, terminal_width=300)
        assert result.exit_code == 1 and line in result.output, (args, result.output)


def test_every_verb_that_runs_a_model_takes_threads_and_a_console_script_exists() -> None:
    import os
    import subprocess
    import sys
    from importlib.metadata import entry_points

    for verb in ("evaluate", "predict", "compare", "bench"):
        result = runner.invoke(app, [verb, "--help"], terminal_width=200)
        assert "--threads" in result.output, verb
    (script,) = [e for e in entry_points(group="console_scripts") if e.name == "densedepth"]
    assert script.value == "cli:main"
    exe = Path(sys.executable).parent / "densedepth"
    if not exe.is_file():
        pytest.skip(f"{exe} is not installed (pip install -e . makes it)")
    done = subprocess.run([str(exe), "info"], capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "200"})  # fmt: skip
    assert done.returncode == 0 and "42,657,689" in done.stdout, done.stderr
