"""Training: learning happens, exact resume, kill-and-resume, DDP on gloo, faults."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from densedepth.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from densedepth.data.readers import open_dataset
from densedepth.depth import depth_to_target
from densedepth.loss import DepthLoss
from densedepth.model import DenseDepth
from densedepth.variant import preset
from train.config import TrainConfig
from train.dataset import TorchDepthDataset
from train.distributed import EpochSampler
from train.errors import TrainingError
from train.loop import fit, validate

ROOT = Path(__file__).resolve().parents[1]
TINY = {
    "backbone": "densenet121",
    "decoder_width": 0.125,
    "weights": "none",
    "input_size": (64, 64),
    "batch_size": 2,
    "synthetic_train": 8,
    "synthetic_test": 4,
    "val_samples": 4,
    "device": "cpu",
    "lr": 3e-4,
    "precision": "fp32",  # the exact-equality tests; bf16 has its own below
}


def tiny_config(out: Path, **kw: object) -> TrainConfig:
    return TrainConfig(**{**TINY, "out": str(out), **kw})


def state_of(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)["model"]


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_a_few_steps_lower_the_loss_on_a_fixed_batch() -> None:
    """12 Adam steps on one batch, in float64: Adam turns the summation-order noise of a
    random encoder's tiny gradients into different steps, so in float32 the loss curve itself
    depends on the CPU's kernels; float64 starts that noise 9 orders of magnitude lower.
    Measured in float64 under ATEN_CPU_CAPABILITY default / avx2 / avx512 and oneDNN capped at
    AVX2: the last loss is 0.6329-0.6330 of the first (the curves agree to 1e-3), against 0.7."""
    torch.manual_seed(0)
    data = TorchDepthDataset(
        open_dataset("synthetic", "train", n=2, height=64, width=64), (64, 64), train=False
    )
    x = torch.stack([data[i][0] for i in range(2)]).double()
    y = depth_to_target(torch.stack([data[i][1] for i in range(2)])).double()
    model = DenseDepth("densenet121", decoder_width=0.125).double()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.999))
    loss_fn = DepthLoss()
    losses = []
    for _ in range(12):
        loss = loss_fn(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.7 * losses[0], losses


@pytest.mark.slow
def test_overfitting_four_images_reaches_delta1_above_0_9() -> None:
    torch.manual_seed(0)
    base = open_dataset("synthetic", "train", n=4, height=64, width=64)
    data = TorchDepthDataset(base, (64, 64), train=False)
    x = torch.stack([data[i][0] for i in range(4)])
    y = depth_to_target(torch.stack([data[i][1] for i in range(4)]))
    model = DenseDepth("densenet121", decoder_width=0.25)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = DepthLoss()
    rgb = np.stack([base[i][0] for i in range(4)])
    gt = np.stack([base[i][1] for i in range(4)])
    metrics = {}
    for step in range(1, 401):
        model.train()
        loss = loss_fn(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 50 == 0:
            metrics = validate(model, rgb, gt, None, torch.device("cpu"))
            if metrics["delta1"] > 0.9:
                break
    assert metrics["delta1"] > 0.9, metrics


def test_epoch_sampler_is_a_resumable_sharded_permutation() -> None:
    s = EpochSampler(10, seed=3)
    s.set_epoch(1)
    full = list(s)
    assert sorted(full) == list(range(10))
    s.set_epoch(1, skip=4)
    assert list(s) == full[4:] and len(s) == 6
    s.set_epoch(2)
    assert list(s) != full
    shards = []
    for rank in range(3):
        r = EpochSampler(10, seed=3, rank=rank, world=3)
        r.set_epoch(1)
        shards.append(list(r))
    assert [len(x) for x in shards] == [4, 4, 4]
    assert set().union(*shards) == set(range(10))


def test_resumed_run_equals_uninterrupted_run(tmp_path: Path) -> None:
    full = fit(tiny_config(tmp_path / "full", max_steps=6, checkpoint_every=2))
    assert full["steps"] == 6
    fit(tiny_config(tmp_path / "part", max_steps=3, checkpoint_every=2))
    assert load_checkpoint(tmp_path / "part" / "last.pt")["step"] == 3
    resumed = fit(tiny_config(tmp_path / "part", max_steps=6, checkpoint_every=2), resume=True)
    assert resumed["steps"] == 6
    assert_same_weights(
        state_of(tmp_path / "full" / "last.pt"), state_of(tmp_path / "part" / "last.pt")
    )
    ckpt = load_checkpoint(tmp_path / "full" / "last.pt")
    assert ckpt["config"]["backbone"] == "densenet121" and ckpt["optimizer"]["state"]
    assert (tmp_path / "full" / "config.json").is_file() and (
        tmp_path / "full" / "best.pt"
    ).is_file()


def _train_cmd(out: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        str(ROOT / "cli.py"),
        "train",
        "--backbone",
        "densenet121",
        "--decoder-width",
        "0.125",
        "--weights",
        "none",
        "--input-size",
        "64x64",
        "--batch-size",
        "2",
        "--synthetic-train",
        "8",
        "--synthetic-test",
        "4",
        "--val-samples",
        "4",
        "--device",
        "cpu",
        "--precision",
        "fp32",
        "--lr",
        "3e-4",
        "--out",
        str(out),
        *extra,
    ]


def _wait_for_step(path: Path, step: int, proc: subprocess.Popen, timeout: float = 120) -> int:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(
                f"training ended early: {proc.stderr.read() if proc.stderr else ''}"
            )
        if path.exists():
            try:
                got = load_checkpoint(path)["step"]
            except CheckpointError:
                got = -1  # never happens with atomic writes; tolerate anyway
            if got >= step:
                return got
        time.sleep(0.05)
    raise AssertionError(f"no checkpoint at step {step} within {timeout} s")


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_loses_only_steps_since_checkpoint(tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["--checkpoint-every", "2", "--max-steps", "12", "--epochs", "5"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(_train_cmd(out, *args), stderr=subprocess.PIPE, text=True, env=env)
    saved = _wait_for_step(out / "last.pt", 5, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    at_kill = load_checkpoint(out / "last.pt")["step"]
    assert at_kill >= saved and at_kill % 2 == 0  # a checkpoint boundary
    done = subprocess.run(
        _train_cmd(out, *args, "--resume"), capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert f"at step {at_kill}" in " ".join(done.stdout.split())
    assert load_checkpoint(out / "last.pt")["step"] == 12
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as OMP_NUM_THREADS=1 above: same reduction order, same bits
    try:
        reference = fit(tiny_config(tmp_path / "ref", max_steps=12, epochs=5, checkpoint_every=2))
    finally:
        torch.set_num_threads(threads)
    assert reference["steps"] == 12
    assert_same_weights(state_of(tmp_path / "ref" / "last.pt"), state_of(out / "last.pt"))


@pytest.mark.slow
@pytest.mark.parametrize(
    ("signum", "code", "word"),
    [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")],
    ids=["ctrl-c", "sigterm"],
)
def test_ctrl_c_or_sigterm_saves_and_exits_cleanly(
    tmp_path: Path, signum: int, code: int, word: str
) -> None:
    """SIGTERM (timeout, schedulers, docker stop) is handled as Ctrl-C: last.pt, then 143."""
    out = tmp_path / "run"
    proc = subprocess.Popen(
        _train_cmd(out, "--checkpoint-every", "1", "--max-steps", "400", "--epochs", "100"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _wait_for_step(out / "last.pt", 2, proc)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    step = load_checkpoint(out / "last.pt")["step"]
    assert f"{word} at step {step}" in err and "--resume" in err and "Traceback" not in err
    assert not list(tmp_path.glob(".dd-lock-*"))  # the run's lock went with it


def test_nan_loss_stops_naming_the_step_and_keeps_last_good_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from train import data

    real_open = data.open_dataset

    class PoisonAt:
        """The training set with images full of NaN (corrupt samples). NaN depth would only
        be missing depth, which the loss masks out; a NaN image makes the prediction NaN."""

        def __init__(self, base: object, bad: set[int]) -> None:
            self.base, self.bad = base, bad

        def __len__(self) -> int:
            return len(self.base)

        def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
            rgb, depth = self.base[i]
            return (rgb * np.float32(np.nan) if i in self.bad else rgb), depth

    def poisoned(path: str, split: str, **kw: object) -> object:
        ds = real_open(path, split, **kw)
        return PoisonAt(ds, set(range(len(ds)))) if split == "train" and poisoned.on else ds

    poisoned.on = False
    monkeypatch.setattr(data, "open_dataset", poisoned)
    fit(tiny_config(tmp_path, max_steps=2, checkpoint_every=1))
    good = state_of(tmp_path / "last.pt")
    poisoned.on = True
    with pytest.raises(TrainingError, match=r"loss became nan at step 3 .*last good checkpoint"):
        fit(tiny_config(tmp_path, max_steps=6, checkpoint_every=1), resume=True)
    assert_same_weights(good, state_of(tmp_path / "last.pt"))


def test_non_finite_weights_are_never_saved_and_the_last_good_step_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An infinite learning rate after resuming: the loss of step 3 is still finite, the
    weights after it are not; they are not written and the error names the good checkpoint."""

    class InfiniteAfterResume(torch.optim.Adam):
        def load_state_dict(self, state_dict: dict) -> None:
            super().load_state_dict(state_dict)
            for group in self.param_groups:
                group["lr"] = float("inf")

    fit(tiny_config(tmp_path, max_steps=2, checkpoint_every=1))
    good = state_of(tmp_path / "last.pt")
    monkeypatch.setattr(torch.optim, "Adam", InfiniteAfterResume)
    with pytest.raises(
        TrainingError,
        match=r"weights became non-finite \(.+\) by step 3; not saved, the last good "
        r"checkpoint .*last.pt \(step 2\) is kept",
    ):
        fit(tiny_config(tmp_path, max_steps=6, checkpoint_every=1), resume=True)
    after = state_of(tmp_path / "last.pt")
    assert_same_weights(good, after)
    assert all(bool(torch.isfinite(v).all()) for v in after.values() if v.is_floating_point())


def test_full_disk_keeps_the_previous_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = save_checkpoint(
        tmp_path / "last.pt", {"model": {"w": torch.ones(2)}, "config": {"backbone": "x"}}
    )
    before = path.read_bytes()

    def full(_: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(
        CheckpointError, match=r"No space left on device.*previous checkpoint is intact"
    ):
        save_checkpoint(path, {"model": {"w": torch.zeros(2)}, "config": {"backbone": "x"}})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temp file left behind


def test_unwritable_output_folder(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(TrainingError, match="not writable"):
        fit(tiny_config(blocker / "run", max_steps=1))


def test_checkpoint_faults(tmp_path: Path) -> None:
    from densedepth.checkpoint import model_from_checkpoint

    model = DenseDepth("densenet121", decoder_width=0.125)
    cfg = {"backbone": "densenet121", "decoder_width": 0.125}
    path = save_checkpoint(tmp_path / "m.pt", {"model": model.state_dict(), "config": cfg})
    with pytest.raises(CheckpointError, match="is a densenet121 model but densenet169 was asked"):
        model_from_checkpoint(path, backbone="densenet169")
    newer = tmp_path / "newer.pt"
    torch.save({"format": "densedepth", "format_version": 99, "model": {}, "config": cfg}, newer)
    with pytest.raises(CheckpointError, match="format 99, newer than this toolkit's 1"):
        load_checkpoint(newer)
    evil = tmp_path / "evil.pt"
    torch.save({"format": "densedepth", "format_version": 1, "model": {}, "x": Exploit()}, evil)
    with pytest.raises(CheckpointError, match=r"refusing .*pickled code"):
        load_checkpoint(evil)
    assert not (tmp_path / "pwned").exists()
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(CheckpointError, match="not a DenseDepth checkpoint"):
        load_checkpoint(foreign)
    wide = save_checkpoint(
        tmp_path / "wide.pt",
        {"model": model.state_dict(), "config": {**cfg, "decoder_width": 0.25}},
    )
    with pytest.raises(CheckpointError, match="do not fit a densenet121"):
        model_from_checkpoint(wide)


class Exploit:
    """Pickles to a call that would create a file on load (if the loader allowed code)."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {Path(__file__).parent / 'pwned'}",))


def test_resume_with_the_other_backbone_or_variant_is_refused(tmp_path: Path) -> None:
    fit(tiny_config(tmp_path, max_steps=1))
    with pytest.raises(TrainingError, match="is a densenet121 run but --backbone densenet169"):
        fit(tiny_config(tmp_path, backbone="densenet169", max_steps=2), resume=True)
    dla = preset("dla").to_dict()  # the same weights' shapes, another network
    with pytest.raises(TrainingError, match=r"model variant differs: checkpoint default \(align"):
        fit(tiny_config(tmp_path, variant=dla, max_steps=2), resume=True)
    with pytest.raises(TrainingError, match="pass --resume to continue it"):
        fit(tiny_config(tmp_path, max_steps=2))


def _torchrun_worker(out: Path, mode: str) -> list[dict[str, dict[str, torch.Tensor]]]:
    """Run tests/ddp_worker.py on 2 gloo ranks in ``mode``; what each rank saved."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone",
           str(ROOT / "tests" / "ddp_worker.py"), str(out), mode]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(2)]


def _relative_gap(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    """||a - b|| / ||b|| over all tensors together."""
    off = sum(float((a[k] - b[k]).norm() ** 2) for k in b)
    size = sum(float(b[k].norm() ** 2) for k in b)
    assert size > 0
    return (off / size) ** 0.5


def test_ddp_step_in_float64_equals_one_process_on_the_global_batch(tmp_path: Path) -> None:
    """What the maths says must be equal, whatever the CPU's summation order: one step of 2
    gloo ranks x 2 images (all-reduced BatchNorm + DDP, as ``fit`` sets them up) gives the
    gradient and the BatchNorm statistics of one process on the 4 images.

    In float64 (unit roundoff 1.1e-16) the two differ only by summation order; the bound 1e-9
    leaves a factor of 1e7 for the depth of the network and the length of the sums (measured:
    1.5e-15 on every CPU capability tried), and is far below the gap without synchronised
    BatchNorm (per-rank statistics over 2 images instead of 4: 3.4e-2 of the gradient, the
    same in any float64 arithmetic), which the second half checks against 1e-3. (The earlier test
    compared weights after two Adam steps in float32: Adam turns summation noise in the tiny
    gradients of a random encoder into sign flips, 0.9%-2.1% of the distance moved depending
    on the CPU's kernels, against a 2% bound.)"""
    from ddp_worker import one_step_float64

    from train.distributed import DistInfo

    single = one_step_float64(DistInfo())
    ranks = _torchrun_worker(tmp_path, "step64")
    assert_same_weights(ranks[0]["gradients"], ranks[1]["gradients"])  # all-reduced
    assert_same_weights(ranks[0]["buffers"], ranks[1]["buffers"])
    assert _relative_gap(ranks[0]["gradients"], single["gradients"]) < 1e-9
    assert _relative_gap(ranks[0]["buffers"], single["buffers"]) < 1e-9
    for k, v in single["buffers"].items():  # every statistic, not only the bulk
        torch.testing.assert_close(ranks[0]["buffers"][k], v, rtol=1e-9, atol=1e-12)
    unsynced = _torchrun_worker(tmp_path, "step64-nosync")  # each rank normalises over its 2
    assert _relative_gap(unsynced[0]["gradients"], single["gradients"]) > 1e-3
    assert _relative_gap(unsynced[0]["buffers"], unsynced[1]["buffers"]) > 1e-3


@pytest.mark.slow
def test_ddp_fit_on_two_gloo_processes_keeps_the_ranks_equal_and_records_the_run(
    tmp_path: Path,
) -> None:
    """``fit`` under torchrun (2 ranks x 2 images, 2 steps): both ranks end with the same
    weights and running statistics bit for bit, rank 0 wrote exactly those, and the checkpoint
    records the world and the per-rank batch. (That the synchronised step is the global
    batch's step is the float64 test above.)"""
    ranks = _torchrun_worker(tmp_path, "fp32")
    assert_same_weights(ranks[0]["parameters"], ranks[1]["parameters"])
    assert_same_weights(ranks[0]["buffers"], ranks[1]["buffers"])  # synchronised statistics
    ckpt = load_checkpoint(tmp_path / "run" / "last.pt")
    assert ckpt["step"] == 2 and ckpt["config"]["extra"]["distributed"] == {
        "world": 2, "per_rank_batch": 2,
    }  # fmt: skip
    written = {k: ckpt["model"][k] for k in ranks[0]["parameters"]}
    assert_same_weights(written, ranks[0]["parameters"])  # rank 0 wrote what both ranks hold
    torch.manual_seed(0)  # fit's seed: the initial weights of the run
    initial = DenseDepth("densenet121", decoder_width=0.125).state_dict()
    assert any(not torch.equal(initial[k], w) for k, w in written.items())  # it trained


class Scenes:
    """A dataset of ``scenes`` x ``frames`` samples whose scene is known (like nyu_data.zip)."""

    name = "scenes"

    def __init__(self, scenes: int, frames: int) -> None:
        self.labels = [f"room_{s:02d}" for s in range(scenes) for _ in range(frames)]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        return np.zeros((8, 8, 3), np.uint8), np.ones((8, 8), np.float32)

    def scene(self, i: int) -> str:
        return self.labels[i]


def test_validation_holds_out_whole_scenes_from_the_seed() -> None:
    from densedepth.data.splits import Subset, split_by_scene
    from densedepth.util.errors import DataError

    data = Scenes(scenes=50, frames=4)
    split = split_by_scene(data, 0.1, seed=0)
    assert (split.val_groups, split.train_groups, split.grouped_by) == (5, 45, "scene")
    train_scenes = {data.scene(i) for i in split.train}
    val_scenes = {data.scene(i) for i in split.val}
    assert not train_scenes & val_scenes and len(val_scenes) == 5  # no scene on both sides
    assert sorted(split.train + split.val) == list(range(200)) and len(split.val) == 20
    assert split_by_scene(data, 0.1, seed=0) == split  # deterministic from the seed
    assert split_by_scene(data, 0.1, seed=1).val != split.val
    val = Subset(data, split.val, "validation")
    assert len(val) == 20 and {val.scene(i) for i in range(20)} == val_scenes
    files = split_by_scene(open_dataset("synthetic", "train", n=10, height=8, width=8), 0.2, 3)
    assert files.grouped_by == "file" and len(files.val) == 2
    for fraction, message in ((0.0, "outside"), (0.6, "outside"), (0.5, None)):
        if message:
            with pytest.raises(DataError, match=message):
                split_by_scene(data, fraction, 0)
        else:
            assert split_by_scene(data, fraction, 0).val_groups == 25
    with pytest.raises(DataError, match="leave no training scene"):
        split_by_scene(Scenes(scenes=1, frames=9), 0.02, 0)


def test_best_is_chosen_on_validation_and_test_is_scored_once(tmp_path: Path) -> None:
    import json

    summary = fit(tiny_config(tmp_path, max_steps=2, synthetic_train=10, val_split=0.2))
    config = json.loads((tmp_path / "config.json").read_text())
    held = config["validation"]
    assert (held["train_images"], held["val_images"], held["grouped_by"]) == (8, 2, "file")
    assert len(held["val_groups_sha256"]) == 64 and held["val_split"] == 0.2
    written = json.loads((tmp_path / "summary.json").read_text())
    assert written["validation"]["best"]["delta1"] == summary["best"]["delta1"]
    test = written["test"]
    assert test["data"].startswith("synthetic(n=4, seed=1") and 0 <= test["delta1"] <= 1
    assert test["n_images"] == 4  # every test image, once, with best.pt
    assert "delta1" in load_checkpoint(tmp_path / "best.pt")["metrics"]


def test_validation_source_and_its_bad_input(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from cli import app

    cli = CliRunner()
    args = ["train", "--backbone", "densenet121", "--decoder-width", "0.125", "--weights", "none",
            "--input-size", "64x64", "--batch-size", "2", "--synthetic-train", "4",
            "--synthetic-test", "2", "--max-steps", "1", "--device", "cpu"]  # fmt: skip
    out = tmp_path / "run"
    run = [*args, "--out", str(out), "--val-data", "synthetic", "--val-split-name", "test"]
    result = cli.invoke(app, [*run, "--amsgrad"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "validating on the test split of synthetic" in " ".join(result.output.split())
    best = load_checkpoint(out / "best.pt")
    assert best["config"]["validation"] == {"source": "synthetic", "split": "test", "val_images": 2}
    assert best["config"]["amsgrad"] and best["optimizer"]["param_groups"][0]["amsgrad"]
    assert all("max_exp_avg_sq" in st for st in best["optimizer"]["state"].values())
    for extra, message in (
        (["--val-split", "0.6"], "outside (0, 0.5]"),
        (["--val-split", "0"], "outside (0, 0.5]"),
        (["--synthetic-train", "1"], "leave no training"),
        (["--val-data", "synthetic", "--val-split-name", "val"], "choose train or test"),
    ):
        bad = tmp_path / "bad"
        result = cli.invoke(app, [*args, *extra, "--out", str(bad)])
        assert result.exit_code == 1 and message in result.output, (extra, result.output)
        assert "Traceback" not in result.output and not bad.exists()  # nothing written


def test_sync_batchnorm_keeps_the_parameters_and_is_batchnorm_alone() -> None:
    """The CPU conversion reuses the Parameter and buffer objects (an optimizer made before
    still updates the model, a checkpoint has the same keys); with no process group it
    computes exactly what BatchNorm2d does, in training and in evaluation."""
    from train.sync_bn import AllReduceBatchNorm2d, sync_batchnorm

    torch.manual_seed(0)
    plain = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    reference = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    reference.load_state_dict(plain.state_dict())
    before = {k: id(v) for k, v in [*plain.named_parameters(), *plain.named_buffers()]}
    keys = list(plain.state_dict())
    converted = sync_batchnorm(plain, torch.device("cpu"))
    assert isinstance(converted[1], AllReduceBatchNorm2d)
    after = {k: id(v) for k, v in [*converted.named_parameters(), *converted.named_buffers()]}
    assert after == before and list(converted.state_dict()) == keys
    x = torch.randn(2, 3, 8, 8)
    for training in (True, False):
        converted.train(training)
        reference.train(training)
        torch.testing.assert_close(converted(x), reference(x), rtol=0, atol=1e-6)
    torch.testing.assert_close(converted[1].running_var, reference[1].running_var)


def test_the_global_batch_must_divide_over_the_ranks(tmp_path: Path, monkeypatch) -> None:
    from train import distributed

    monkeypatch.setattr(
        distributed, "init_distributed", lambda device: distributed.DistInfo(0, 2, 0)
    )
    with pytest.raises(TrainingError, match="global batch, split over 2 ranks"):
        fit(tiny_config(tmp_path / "run", batch_size=3))
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_training_on_kitti_adopts_its_depth_range_size_and_protocol(tmp_path: Path) -> None:
    """On KITTI data (the synthetic street layout) fit learns 80 / depth over 1..80 m, records
    that variant and the 384x1248 default input in config.json and the checkpoints, holds out
    whole drives, and validates and tests with KITTI's protocol."""
    from densedepth.data.writers import write_synthetic

    root = write_synthetic(tmp_path / "kitti", "kitti", 8, 2, seed=1, height=48, width=160)
    cfg = tiny_config(tmp_path / "run", data=str(root), input_size=None, max_steps=2,
                   val_split=0.5, val_samples=2, batch_size=2)  # fmt: skip
    summary = fit(cfg)
    saved = load_checkpoint(tmp_path / "run" / "best.pt")["config"]
    assert saved["variant"]["depth"] == {"min_depth": 1.0, "max_depth": 80.0, "numerator": 80.0}
    assert saved["input_size"] == [384, 1248] and saved["extra"]["protocol"] == "kitti-garg"
    assert summary["validation"]["grouped_by"] == "scene"  # drives
    assert summary["best"]["protocol"] == summary["test"]["protocol"] == "kitti-garg"
    assert summary["model"].variant.depth.max_depth == 80.0


XEON_AMX = "flags\t\t: fpu sse avx2 avx512f avx512_vnni avx512_bf16 amx_bf16 amx_tile amx_int8\n"
COOPER_LAKE = "flags\t\t: fpu sse avx2 avx512f avx512_vnni avx512_bf16\n"
EPYC_AVX2 = "flags\t\t: fpu sse avx2 fma\n"


def test_auto_precision_follows_the_cpu_flags_and_the_device() -> None:
    from densedepth.precision import resolve_precision
    from densedepth.util.errors import DenseDepthError

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    amx = resolve_precision("auto", cpu, XEON_AMX)
    assert (amx.name, amx.channels_last, amx.dtype) == ("bf16", True, torch.bfloat16)
    assert "AMX" in amx.why and not amx.scales_loss
    assert amx.memory_format == torch.channels_last
    assert "AVX512-BF16" in resolve_precision("auto", cpu, COOPER_LAKE).why
    plain = resolve_precision("auto", cpu, EPYC_AVX2)
    assert (plain.name, plain.channels_last, plain.dtype) == ("fp32", False, None)
    assert plain.memory_format == torch.contiguous_format
    gpu = resolve_precision("auto", cuda, XEON_AMX)
    assert (gpu.name, gpu.dtype, gpu.scales_loss) == ("fp16", torch.float16, True)
    emulated = resolve_precision("bf16", cpu, EPYC_AVX2)  # asked for: allowed, and said so
    assert emulated.name == "bf16" and "emulated" in emulated.why
    assert resolve_precision("fp32", cpu, XEON_AMX).name == "fp32"
    with pytest.raises(DenseDepthError, match="fp16 needs a CUDA GPU"):
        resolve_precision("fp16", cpu, XEON_AMX)
    with pytest.raises(DenseDepthError, match="unknown precision 'fp8'"):
        resolve_precision("fp8", cpu, XEON_AMX)


def test_bf16_training_runs_the_network_in_bf16_channels_last_and_the_loss_in_fp32(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import train.loop as loop

    seen: dict[str, set] = {"loss_inputs": set(), "net_out": set(), "net_in_nhwc": set()}

    class RecordingLoss(DepthLoss):
        def forward(self, pred, target, mask=None):  # type: ignore[override]
            seen["loss_inputs"].add((pred.dtype, target.dtype))
            loss = super().forward(pred, target, mask)
            seen["loss_inputs"].add((loss.dtype,))
            return loss

    build_model = loop.build_model

    def build_watched(cfg: TrainConfig) -> DenseDepth:
        model = build_model(cfg)

        def hook(module, args, output):
            if module.training:
                seen["net_out"].add(output.dtype)
                seen["net_in_nhwc"].add(args[0].is_contiguous(memory_format=torch.channels_last))

        model.register_forward_hook(hook)
        return model

    monkeypatch.setattr(loop, "DepthLoss", RecordingLoss)
    monkeypatch.setattr(loop, "build_model", build_watched)
    summary = fit(tiny_config(tmp_path, precision="bf16", max_steps=2))
    assert seen["net_out"] == {torch.bfloat16}  # autocast was on in the forward pass
    assert seen["net_in_nhwc"] == {True}
    assert seen["loss_inputs"] == {(torch.float32, torch.float32), (torch.float32,)}
    assert summary["precision"] == "bf16"
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["precision"] == "bf16"
    assert config["extra"]["precision"]["used"] == "bf16"
    assert config["extra"]["precision"]["channels_last"] is True
    history = [json.loads(line) for line in (tmp_path / "history.jsonl").read_text().splitlines()]
    assert history and all(h["precision"] == "bf16" for h in history)
    weights = state_of(tmp_path / "best.pt")
    assert {v.dtype for v in weights.values() if v.is_floating_point()} == {torch.float32}
    assert np.isfinite(summary["best"]["delta1"])


def test_fp32_training_records_fp32_and_never_autocasts(tmp_path: Path) -> None:
    summary = fit(tiny_config(tmp_path, max_steps=1))
    config = json.loads((tmp_path / "config.json").read_text())
    assert summary["precision"] == "fp32" == config["extra"]["precision"]["used"]
    assert config["extra"]["precision"]["channels_last"] is False


@pytest.mark.slow
def test_ddp_under_bf16_autocast_keeps_the_ranks_and_their_batchnorm_statistics_equal(
    tmp_path: Path,
) -> None:
    """The CPU's all-reduced BatchNorm takes bf16 activations under autocast (its statistics
    in fp32): both ranks end with the same weights and the same running statistics."""
    ranks = _torchrun_worker(tmp_path, "bf16")
    assert_same_weights(ranks[0]["parameters"], ranks[1]["parameters"])
    assert_same_weights(ranks[0]["buffers"], ranks[1]["buffers"])
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["extra"]["precision"]["used"] == "bf16"
    for v in ranks[0]["buffers"].values():
        assert v.dtype == torch.float32 and bool(torch.isfinite(v).all())
