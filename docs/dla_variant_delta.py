"""What the DLA variant costs: its Δ against the default (align_corners) model, measured.

Run from the repository root (7 minutes on 2 idle CPU cores; ``--reuse`` re-evaluates)::

    .venv/bin/python docs/dla_variant_delta.py [--steps 300] [--out DIR]

(a) ``cli.py train`` twice with the same seed, data and recipe (densenet121, decoder width
0.25, 96x128, from scratch, fp32), once ``--variant default`` and once ``--variant dla``;
both are scored on the held-out synthetic test scenes (the training job's own test split, 100
scenes, never trained or validated on): last.pt (the same number of steps each, the fair
comparison) and best.pt (what training hands over, at the step validation chose).
(b) The align_corners model switched to half_pixel without retraining (what a user with an
existing checkpoint would lose by exporting it as the DLA variant), and the reverse.
(c) Where ``../shared/nyu-samples/pairs`` holds real NYU RGB + depth frames, all of them on
those too: real held-out scenes, but models this small trained on synthetic rooms do badly
on them in absolute terms; only the Δ means anything there.
A third run (default variant, seed 1: another init, data order and set of training scenes)
gives the noise floor a Δ has to clear; ``--no-noise`` skips it.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
NYU_PAIRS = ROOT.parent / "shared" / "nyu-samples" / "pairs"
KEYS = (("delta1", "δ1"), ("rel", "rel"), ("rms", "rms"))


def train(out: Path, variant: str, args: argparse.Namespace, seed: int = 0) -> Path:
    """One ``cli.py train`` run (kept with ``--reuse`` where ``out`` holds one); returns ``out``."""
    h, w = args.size
    cmd = [sys.executable, "cli.py", "train", "--backbone", "densenet121", "--weights", "none",
           "--decoder-width", "0.25", "--input-size", f"{h}x{w}", "--batch-size", "8",
           "--lr", "1e-3", "--max-steps", str(args.steps), "--epochs", "100",
           "--synthetic-train", "800", "--synthetic-test", "100", "--val-samples", "16",
           "--test-samples", "0", "--seed", str(seed), "--device", "cpu", "--precision", "fp32",
           "--checkpoint-every", "0", "--variant", variant, "--out", str(out)]  # fmt: skip
    print("$", " ".join(cmd[1:]), flush=True)
    if args.reuse and (out / "summary.json").is_file():
        print("  (reused)")
        return out
    t0 = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"training failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    print(f"  {done.stdout.strip().splitlines()[-1]} ({time.perf_counter() - t0:.0f} s)")
    return out


def step_of(ckpt: Path) -> int:
    """The optimiser step a checkpoint was saved at."""
    from densedepth.checkpoint import load_checkpoint

    return int(load_checkpoint(ckpt)["step"])


def switched(ckpt: Path, variant: str, out: Path) -> Path:
    """``ckpt``'s weights recorded as ``variant`` (no retraining)."""
    from densedepth.checkpoint import load_checkpoint, save_checkpoint
    from densedepth.variant import preset

    c = load_checkpoint(ckpt)
    c["config"] = {**c["config"], "variant": preset(variant).to_dict()}
    return save_checkpoint(out, c)


def evaluate(ckpt: Path, dataset: Any, size: tuple[int, int]) -> dict[str, float]:
    """Eigen-protocol metrics of a checkpoint on ``dataset`` (CPU)."""
    from densedepth.evaluation import evaluate_dataset
    from engines import load_runner

    return evaluate_dataset(load_runner(ckpt, device="cpu"), dataset, size)


def table(title: str, rows: dict[str, dict[str, float]], base: str) -> None:
    """The rows' δ1, rel, rms, and each row's Δ against ``base``."""
    print(f"\n{title}")
    print(f"  {'model':44s}" + "".join(f"{label:>9s}" for _, label in KEYS) + "   Δ vs the first")
    for name, m in rows.items():
        vals = "".join(f"{m[k]:9.4f}" for k, _ in KEYS)
        delta = (
            ""
            if name == base
            else "  " + "  ".join(f"{label} {m[k] - rows[base][k]:+.4f}" for k, label in KEYS)
        )
        print(f"  {name:44s}{vals}{delta}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300, help="optimiser steps per model")
    parser.add_argument("--size", type=lambda s: tuple(map(int, s.split("x"))), default=(96, 128))
    parser.add_argument("--out", type=Path, default=None, help="scratch folder (default: temp)")
    noise = "skip the seed-1 default model (the run-to-run noise floor)"
    parser.add_argument("--no-noise", dest="noise", action="store_false", help=noise)
    reuse = "keep the runs already trained in --out (re-evaluate only)"
    parser.add_argument("--reuse", action="store_true", help=reuse)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from densedepth.data.readers import open_dataset

    out = args.out or Path(tempfile.mkdtemp(prefix="dla-delta-"))
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    runs = {v: train(out / v, v, args) for v in ("default", "dla")}
    if args.noise:
        runs["seed1"] = train(out / "default_seed1", "default", args, seed=1)
    # last.pt: the same number of steps each (the fair comparison); best.pt: what training
    # hands over, at the step its 16 validation scenes chose (it may differ between the runs)
    last = {k: r / "last.pt" for k, r in runs.items()}
    best = {k: r / "best.pt" for k, r in runs.items()}
    at_last = {
        "align_corners (trained default)": last["default"],
        "half_pixel (trained --variant dla)": last["dla"],
        "default weights run as half_pixel (b)": switched(
            last["default"], "dla", out / "default_last_as_dla.pt"
        ),
        "dla weights run as align_corners": switched(
            last["dla"], "default", out / "dla_last_as_default.pt"
        ),
    }
    at_best = {
        f"align_corners (step {step_of(best['default'])})": best["default"],
        f"half_pixel (step {step_of(best['dla'])})": best["dla"],
        "default best.pt run as half_pixel (b)": switched(
            best["default"], "dla", out / "default_best_as_dla.pt"
        ),
    }
    if args.noise:
        at_last["align_corners, seed 1 (noise)"] = last["seed1"]
        at_best[f"align_corners, seed 1 (step {step_of(best['seed1'])}, noise)"] = best["seed1"]
    groups = {
        f"last.pt (step {step_of(last['default'])} each)": at_last,
        "best.pt (step chosen on validation)": at_best,
    }
    h, w = args.size
    sets = {"held-out synthetic test scenes (100, seed 1)": open_dataset(
        "synthetic", "test", n=100, seed=1, height=h, width=w)}  # fmt: skip
    if NYU_PAIRS.is_dir():
        pairs = open_dataset(NYU_PAIRS, "test")
        sets[f"real NYU frames ({len(pairs)}; synthetic-trained: poor in absolute terms)"] = pairs
    results: dict[str, dict[str, dict[str, float]]] = {}
    for title, dataset in sets.items():
        for group, models in groups.items():
            key = f"{title}, {group}"
            results[key] = {n: evaluate(c, dataset, args.size) for n, c in models.items()}
            table(key, results[key], next(iter(models)))
    (out / "delta.json").write_text(json.dumps(results, indent=2, default=float) + "\n")
    print(f"\n{out / 'delta.json'}; {time.perf_counter() - t0:.0f} s in all")


if __name__ == "__main__":
    main()
