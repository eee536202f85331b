#!/usr/bin/env python
"""DenseDepth edge toolkit command line: each verb parses options and calls the library."""

from __future__ import annotations

import codecs
import errno
import os
import sys
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from densedepth.data.readers import DATASET_LAYOUTS, KITTI_SPLITS, open_dataset
from densedepth.data.writers import write_synthetic
from densedepth.metrics import METRIC_KEYS, PROTOCOLS
from densedepth.precision import PRECISIONS
from densedepth.util.errors import DenseDepthError, error_line
from densedepth.util.files import require_files
from densedepth.util.outputs import claim_output, record_written, replacing
from densedepth.variant import BACKBONE_NAMES
from export.formats import BUILD_TARGETS

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="DenseDepth (Alhashim & Wonka 2018): NYU data, training, evaluation, edge deployment.",
)
# What a terminal that cannot encode a character gets instead (LANG=C without UTF-8 mode, a
# latin-1 console): the table still prints, "d1" for "δ1", instead of a UnicodeEncodeError.
PLAIN = {"δ": "d", "Δ": "D", "…": "...", "\u00d7": "x", "µ": "u", "—": "-", "\u2013": "-",
         "→": "->", "≤": "<=", "≥": ">=", "±": "+-", "°": " deg", "²": "^2", "·": "."}  # fmt: skip


def _plain(err: UnicodeError) -> tuple[str, int]:
    if not isinstance(err, UnicodeEncodeError):
        raise err
    return "".join(PLAIN.get(ch, "?") for ch in err.object[err.start : err.end]), err.end


codecs.register_error("densedepth-plain", _plain)


def degrade_unencodable() -> None:
    """stdout and stderr write what their encoding cannot hold as plain ASCII (``PLAIN``)."""
    for stream in (sys.stdout, sys.stderr):
        encoding = getattr(stream, "encoding", None) or "utf-8"
        try:
            "δΔ…━".encode(encoding)
        except (UnicodeEncodeError, LookupError):
            if hasattr(stream, "reconfigure"):
                stream.reconfigure(errors="densedepth-plain")


degrade_unencodable()
# Logs and pipes get wide lines (Rich's default for a non-terminal is 80 columns).
console = Console(width=None if sys.stdout.isatty() or "COLUMNS" in os.environ else 140)


def console_log(line: str) -> None:
    """A library log line on the console: printed as written (no markup), never wrapped."""
    from rich.markup import escape

    console.print(escape(line), soft_wrap=True)


def stderr_line(line: str) -> None:
    """A library warning line on stderr."""
    typer.echo(line, err=True)


def show_warning(message: Warning | str, *args: object, **kwargs: object) -> None:
    """Python warnings as ``warning: message`` on stderr (no file and line)."""
    typer.echo(f"warning: {message}", err=True)


DEBUG = {"on": os.environ.get("DENSEDEPTH_DEBUG", "") not in ("", "0")}


@app.callback()
def setup(
    debug: Annotated[
        bool,
        typer.Option("--debug", help="Show the traceback of an error (or DENSEDEPTH_DEBUG=1)."),
    ] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No progress display on long steps.")
    ] = False,
) -> None:
    """DenseDepth (Alhashim & Wonka 2018): NYU data, training, evaluation, edge deployment."""
    from densedepth.util.progress import set_enabled, set_quiet

    warnings.showwarning = show_warning
    DEBUG["on"] = DEBUG["on"] or debug
    set_enabled(True)
    set_quiet(quiet)


Backbone = Enum("Backbone", {name: name for name in BACKBONE_NAMES}, type=str)  # type: ignore[misc]
DataFormat = Enum("DataFormat", {f: f for f in DATASET_LAYOUTS}, type=str)  # type: ignore[misc]


class Split(str, Enum):
    train = "train"
    test = "test"


_OS_HINTS = {
    errno.ENOSPC: "no space left on the device; free space or choose another --out",
    errno.EDQUOT: "disk quota exceeded; free space or choose another --out",
    errno.EACCES: "permission denied; choose a location you can write to",
    errno.EPERM: "operation not permitted; choose a location you can write to",
    errno.EROFS: "read-only file system; choose another location",
    errno.EISDIR: "it is a folder; give a file name",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.ENOENT: "no such file or folder",
    errno.ELOOP: "symbolic link loop",
    errno.ENAMETOOLONG: "name too long",
}


def os_error_line(exc: OSError) -> str:
    """One line for a file-system error: which file, what happened, what to do."""
    hint = _OS_HINTS.get(exc.errno or -1) or exc.strerror or str(exc)
    names = [n for n in (exc.filename, exc.filename2) if n is not None]
    where = " -> ".join(map(str, names))
    return f"{where}: {hint}" if where else hint


NEEDS_TORCH = (
    "this needs PyTorch, which is not installed (the base install runs ONNX, OpenVINO and "
    "TensorRT files only): pip install 'densedepth-edge[train]', or -e '.[train]' in a clone"
)


def missing_torch(exc: ModuleNotFoundError) -> bool:
    """The import that failed is torch's or torchvision's (the [train] extra)."""
    return (exc.name or "").split(".")[0] in ("torch", "torchvision")


def fail(line: str, code: int = 1) -> typer.Exit:
    """Print ``error: line`` on stderr; the Exit to raise."""
    typer.echo(f"error: {line}", err=True)
    return typer.Exit(code)


PRINTERS = ("rich/console.py", "click/utils.py")  # where console.print and typer.echo write


def stdout_failed(exc: BaseException) -> bool:
    """Whether ``exc`` was raised writing standard output (a full disk, a closed pipe); if so
    stdout is pointed at /dev/null, so that exiting does not fail on it again."""
    tb = exc.__traceback__
    while tb is not None and not tb.tb_frame.f_code.co_filename.endswith(PRINTERS):
        tb = tb.tb_next
    if tb is None:
        return False
    try:
        fd = os.open(os.devnull, os.O_WRONLY)
        os.dup2(fd, sys.stdout.fileno())
        os.close(fd)
    except (OSError, ValueError, AttributeError):
        pass
    return True


@contextmanager
def user_errors() -> Iterator[None]:
    """The one error boundary of every verb: our errors, file-system errors and any other
    exception become one line on stderr and exit 1 (Ctrl-C: 130, SIGTERM: 143); ``--debug`` or
    DENSEDEPTH_DEBUG=1 shows the traceback instead."""
    try:
        yield
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (densedepth.util.signals.Terminated)
        from densedepth.util.signals import Terminated, exit_code

        typer.echo("terminated" if isinstance(exc, Terminated) else "interrupted", err=True)
        raise typer.Exit(exit_code(exc)) from None
    except Exception as exc:
        if DEBUG["on"] or type(exc).__module__.startswith(("typer", "click")):
            raise  # typer.Exit, usage errors: typer prints them
        if isinstance(exc, DenseDepthError):
            raise fail(str(exc)) from None
        if isinstance(exc, ModuleNotFoundError) and missing_torch(exc):
            raise fail(NEEDS_TORCH) from None
        if isinstance(exc, OSError) and exc.filename is None and stdout_failed(exc):
            hint = _OS_HINTS.get(exc.errno or -1, exc.strerror or str(exc)).split(";")[0]
            raise fail(f"cannot write to standard output: {hint}; redirect it elsewhere") from None
        if isinstance(exc, OSError):
            raise fail(os_error_line(exc)) from None
        raise fail(f"{error_line(exc)} (unexpected; `cli.py --debug ...` shows where)") from None


@contextmanager
def output_folder(
    out: Path, overwrite: bool, verb: str, inputs: Sequence[Path] = ()
) -> Iterator[Path]:
    """The verb's output folder (``densedepth.util.outputs.OutputFolder``): refused unless new,
    empty or ours; an error or Ctrl-C inside puts the previous folder back."""
    from densedepth.util.outputs import OutputFolder

    folder = OutputFolder(out, overwrite, verb, inputs)
    with folder as path:
        if folder.note:
            typer.echo(f"note: {folder.note}", err=True)
        yield path


THREADS_REFUSED_ABOVE = 4  # x the CPU count: more is a typo, not a tuning choice


def check_threads(threads: int) -> None:
    """--threads above the CPUs this process may use: a warning on stderr; more than
    ``THREADS_REFUSED_ABOVE`` times it: refused in one line (exit 1). The first line of every
    verb with --threads, before anything is loaded or written."""
    from densedepth.util.cpu import usable_cores

    cpus = usable_cores()
    if threads > THREADS_REFUSED_ABOVE * cpus:
        raise fail(
            f"--threads {threads} is far more than the {cpus} CPUs here (over "
            f"{THREADS_REFUSED_ABOVE}x); pass at most {cpus}, or 0 for the engine's default"
        )
    if threads > cpus:
        typer.echo(
            f"warning: --threads {threads} is more than the {cpus} CPUs here; the extra threads "
            f"share cores and usually make it slower (0 = the engine's default)",
            err=True,
        )


@app.command()
def info(
    model: Annotated[
        Path | None,
        typer.Argument(help="A checkpoint, ONNX, IR or engine: what it records (no backbones)."),
    ] = None,
) -> None:
    """List the backbones: parameters, encoder skips (module, stride, channels), weight files;
    with MODEL, what that file records (backbone, precision, depth range, training camera)."""
    with user_errors():
        if model is not None:
            from engines.base import file_info, info_lines

            require_files([model])
            for line in info_lines(file_info(model)):
                typer.echo(line)
            return
        from densedepth.model import (
            DenseDepth,
            count_parameters,
            feature_info,
            imagenet_weights_path,
        )

        table = Table(title="DenseDepth backbones (decoder width 1.0)")
        for col in ("backbone", "parameters", "skips: module /stride channels", "ImageNet file"):
            table.add_column(col)
        for name in BACKBONE_NAMES:
            params = count_parameters(DenseDepth(name))
            rows = feature_info(name)
            skips = ", ".join(f"{r['module']} /{r['stride']} {r['channels']}" for r in rows)
            path = imagenet_weights_path(name)
            state = "found" if path.is_file() else "absent"
            table.add_row(name, f"{params:,}", skips, f"{path} ({state})")
        console.print(table)


@app.command()
def synth(
    out: Annotated[Path, typer.Argument(help="Folder to write into.")],
    fmt: Annotated[DataFormat, typer.Option("--format", help="File layout to write.")] = "pairs",
    train: Annotated[int, typer.Option(min=0, help="Training scenes.")] = 16,
    test: Annotated[int, typer.Option(min=1, help="Test scenes.")] = 8,
    seed: Annotated[int, typer.Option(help="Train seed; test scenes use seed + 1.")] = 0,
    height: Annotated[
        int | None, typer.Option(min=8, help="Image height (480; KITTI 375).")
    ] = None,
    width: Annotated[int | None, typer.Option(min=8, help="Image width (640; KITTI 1242).")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace a dataset synth wrote before.")] = False,
) -> None:
    """Render synthetic scenes with exact depth and write them in a real layout: indoor rooms
    as NYU's, or (--format kitti) street frames with sparse lidar-like ground truth as KITTI's."""
    with user_errors():
        kitti = fmt.value == "kitti"
        height = height or (375 if kitti else 480)
        width = width or (1242 if kitti else 640)
        t0 = time.perf_counter()
        with output_folder(out, overwrite, "synth") as folder:
            path = write_synthetic(folder, str(fmt.value), train, test, seed, height, width)
        seconds = time.perf_counter() - t0
        console.print(f"saved {path} ({train} train + {test} test, {seconds:.1f} s)")


def dataset_table(ds: Sequence[tuple], n: int) -> tuple[Table, list, list]:
    """A table of the first ``n`` samples (shapes, valid share, depth range) and the samples."""
    import numpy as np

    table = Table(title=f"{getattr(ds, 'name', 'dataset')}: {len(ds)} samples")
    for col in ("index", "rgb", "depth", "valid", "min m", "median m", "max m"):
        table.add_column(col)
    rgbs, depths = [], []
    for i in range(min(n, len(ds))):
        rgb, depth = ds[i]
        valid = depth[depth > 0]
        stats = (valid.min(), np.median(valid), valid.max()) if valid.size else (0, 0, 0)
        table.add_row(
            str(i),
            f"{rgb.shape} {rgb.dtype}",
            f"{depth.shape} {depth.dtype}",
            f"{valid.size / depth.size:.0%}",
            *(f"{v:.2f}" for v in stats),
        )
        rgbs.append(rgb)
        depths.append(depth)
    return table, rgbs, depths


@app.command()
def inspect(
    data: Annotated[str, typer.Argument(help="Dataset path (zip, .mat, folder) or 'synthetic'.")],
    split: Annotated[Split, typer.Option(help="Which split to read.")] = Split.test,
    n: Annotated[int, typer.Option(min=1, help="Samples to show.")] = 4,
    grid: Annotated[Path | None, typer.Option(help="Write a RGB | depth grid PNG here.")] = None,
) -> None:
    """Open a dataset, check the first samples and print their shapes and depth ranges."""
    with user_errors():
        from densedepth.camera import camera_line
        from densedepth.viz import save_grid

        dataset = open_dataset(data, split.value)
        table, rgbs, depths = dataset_table(dataset, n)
        console.print(table)
        typer.echo(camera_line(getattr(dataset, "camera", None)))
        if grid is not None:
            console.print(f"saved {save_grid(grid, rgbs, {'depth': depths})}")


def parse_size(text: str) -> tuple[int, int]:
    """``"480x640"`` -> (480, 640); a clear error otherwise."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise DenseDepthError(f"size {text!r} is not HEIGHTxWIDTH (e.g. 480x640)") from None
    from densedepth.variant import check_input_size

    check_input_size(h, w)
    return h, w


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


KittiSplit = Enum("KittiSplit", {s: s for s in KITTI_SPLITS}, type=str)  # type: ignore[misc]
Protocol = Enum("Protocol", {p: p for p in ("auto", *PROTOCOLS)}, type=str)  # type: ignore[misc]
TrainPrecision = Enum("TrainPrecision", {p: p for p in PRECISIONS}, type=str)  # type: ignore[misc]


class QatCalib(str, Enum):
    max = "max"
    entropy = "entropy"


@app.command()
def train(
    backbone: Annotated[Backbone, typer.Option(help="Encoder.")] = "densenet169",
    data: Annotated[str, typer.Option(help="Dataset path or 'synthetic'.")] = "synthetic",
    split: Annotated[
        KittiSplit,
        typer.Option(help="KITTI data: eigen (split files), benchmark (drives) or auto."),
    ] = KittiSplit.auto,
    val_data: Annotated[
        str | None,
        typer.Option(help="Validate on this source instead of a split of --data."),
    ] = None,
    val_split: Annotated[
        float, typer.Option(help="Share of the training scenes held out for validation.")
    ] = 0.02,
    val_split_name: Annotated[
        str, typer.Option(help="Split of --val-data to validate on: train, or test (warned).")
    ] = "train",
    weights: Annotated[
        str,
        typer.Option(
            help="Encoder init: imagenet (torch hub's cache, fetched from torchvision and "
            "verified when missing), none, or a FILE."
        ),
    ] = "imagenet",
    offline: Annotated[
        bool,
        typer.Option(
            "--offline", help="Never fetch weights (also DENSEDEPTH_OFFLINE=1): use the cache."
        ),
    ] = False,
    epochs: Annotated[int, typer.Option(min=1, help="Epochs.")] = 20,
    max_steps: Annotated[int | None, typer.Option(min=1, help="Stop after N steps.")] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Batch size (paper: 8).")] = 8,
    lr: Annotated[float, typer.Option(min=0.0, help="Adam learning rate (paper: 1e-4).")] = 1e-4,
    amsgrad: Annotated[
        bool, typer.Option("--amsgrad", help="Adam's AMSGrad variant (the released code used it).")
    ] = False,
    input_size: Annotated[
        str | None,
        typer.Option(help="Network input HEIGHTxWIDTH (default 480x640; KITTI data 384x1248)."),
    ] = None,
    decoder_width: Annotated[float, typer.Option(min=0.01, help="Decoder width factor.")] = 1.0,
    variant: Annotated[
        str | None,
        typer.Option(
            help="Model variant: default (the paper's align_corners resizes) or dla (half-pixel "
            "x2 resizes and a Div, which Jetson's DLA runs whole); the data's depth range. "
            "Default: default, or with --resume the run's own."
        ),
    ] = None,
    out: Annotated[Path, typer.Option(help="Run folder (checkpoints, config, logs).")] = Path(
        "runs/train"
    ),
    resume: Annotated[bool, typer.Option(help="Continue the run in --out from last.pt.")] = False,
    device: Annotated[Device, typer.Option(help="auto, cpu or cuda.")] = Device.auto,
    precision: Annotated[
        TrainPrecision,
        typer.Option(
            help="Forward-pass arithmetic. auto: fp16 autocast + loss scaling on CUDA, bf16 "
            "autocast + channels_last on CPUs with AVX512-BF16 or AMX, else fp32 (the loss "
            "stays fp32)."
        ),
    ] = TrainPrecision.auto,
    seed: Annotated[int, typer.Option(help="Seed of init, data order and augmentation.")] = 0,
    workers: Annotated[int, typer.Option(min=0, help="DataLoader worker processes.")] = 0,
    checkpoint_every: Annotated[int, typer.Option(min=0, help="Steps between last.pt.")] = 200,
    val_samples: Annotated[int, typer.Option(min=0, help="Validation images (0 = all).")] = 64,
    test_samples: Annotated[
        int, typer.Option(min=0, help="Test images scoring best.pt at the end (0 = all).")
    ] = 0,
    synthetic_train: Annotated[int, typer.Option(min=1, help="Synthetic train scenes.")] = 1000,
    synthetic_test: Annotated[int, typer.Option(min=1, help="Synthetic test scenes.")] = 100,
    qat: Annotated[
        bool,
        typer.Option(
            "--qat",
            help="Quantization-aware fine-tuning of --resume-from for --steps (INT8 fake "
            "quantization in the TensorRT flavour); writes --out/qat.pt for `export`.",
        ),
    ] = False,
    resume_from: Annotated[
        Path | None, typer.Option(help="--qat: the float checkpoint to fine-tune.")
    ] = None,
    steps: Annotated[int, typer.Option(min=1, help="--qat: fine-tuning steps.")] = 200,
    qat_calib: Annotated[
        QatCalib,
        typer.Option(
            help="--qat: activation ranges, fixed while fine-tuning: the largest magnitude, "
            "or TensorRT's entropy threshold."
        ),
    ] = QatCalib.max,
) -> None:
    """Train DenseDepth with the paper's recipe (Adam 1e-4, batch 8, flip + channel swap)."""
    if qat or resume_from is not None:
        return train_qat(resume_from, out, steps, qat, qat_calib.value)
    values = plain_options(
        locals(), drop=("resume", "qat", "resume_from", "steps", "qat_calib", "offline")
    )
    if offline:
        os.environ["DENSEDEPTH_OFFLINE"] = "1"  # densedepth.model.offline() reads it
    with user_errors():
        import json

        from densedepth.model import check_decoder_width
        from densedepth.variant import training_variant
        from train.config import TrainConfig
        from train.loop import TrainingInterrupted, fit

        values["kitti_split"] = values.pop("split")
        values["input_size"] = parse_size(input_size) if input_size else None
        check_decoder_width(values["backbone"], decoder_width)
        recorded = None  # --resume: the run's own variant (config.json), kept
        if resume and (out / "config.json").is_file():
            recorded = json.loads((out / "config.json").read_text()).get("variant") or {}
        kind = "nyu"  # the data's depth range, for a preset other than the default
        if variant not in (None, "default"):
            probe = open_dataset(data, "train", kitti_split=values["kitti_split"], n=1)
            kind = getattr(probe, "depth_kind", "nyu")
        values["variant"] = training_variant(variant, kind, recorded)
        try:
            summary = fit(TrainConfig(**values), resume=resume, console=console)
        except TrainingInterrupted as exc:
            from densedepth.util.signals import exit_code

            typer.echo(str(exc), err=True)
            raise typer.Exit(exit_code(exc.signum)) from None
        console.print(
            f"done: {summary['steps']} steps, {summary['img_per_s']:.1f} img/s; "
            f"best {summary['best_path']} (chosen on validation), last {summary['last']}",
            soft_wrap=True,
        )


def train_qat(resume_from: Path | None, out: Path, steps: int, qat: bool, method: str) -> None:
    """``train --qat``: fine-tune a float checkpoint with fake INT8 into OUT/qat.pt."""
    with user_errors():
        from densedepth.util.errors import DenseDepthError
        from train.qat import run_qat

        if not qat or resume_from is None:
            raise DenseDepthError("--qat and --resume-from CHECKPOINT go together")
        run_qat(resume_from, out / "qat.pt", steps, console=console, method=method)
        written = out / "export" / "model_qat_int8.onnx"
        console.print(f"next: cli.py export {out / 'qat.pt'}  (writes {written})")


def plain_options(values: dict, drop: Sequence[str] = ()) -> dict:
    """A verb's options as plain values: an Enum's value, a Path as text; ``drop`` left out."""
    plain = {k: v.value if isinstance(v, Enum) else v for k, v in values.items() if k not in drop}
    return {k: str(v) if isinstance(v, Path) else v for k, v in plain.items()}


def metrics_table(title: str, rows: list[dict]) -> Table:
    """The six metrics per row (rich)."""
    table = Table(title=title)
    table.add_column("model", overflow="fold")
    for col in ("δ1", "δ2", "δ3", "rel", "rms", "log10", "images"):
        table.add_column(col)
    for r in rows:
        vals = [f"{r[k]:.4f}" for k in METRIC_KEYS]
        table.add_row(r["model"], *vals, str(r.get("n_images", "")))
    return table


def range_summary(by_range: list[dict]) -> list[str]:
    """One line per depth range of ground truth: its pixels, δ1 and rel."""
    lines = []
    for e in by_range:
        lo, hi = e["range_m"]
        figures = f"δ1 {e['delta1']:.4f}  rel {e['rel']:.4f}" if e["pixels"] else "no pixels"
        lines.append(f"  {lo:g}-{hi:g} m (ground truth): {e['pixels']:,} px, {figures}")
    return lines


def is_metrics_file(path: Path) -> bool:
    """Whether ``path`` is a metrics JSON that ``evaluate --out`` wrote."""
    import json

    try:
        row = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(row, dict) and {"model", "data", "delta1", "n_images"} <= row.keys()


@app.command()
def evaluate(
    model: Annotated[Path, typer.Argument(help="Checkpoint (.pt) or engine file.")],
    data: Annotated[str, typer.Option(help="Test set path or 'synthetic'.")] = "synthetic",
    protocol: Annotated[
        Protocol,
        typer.Option(
            help="auto (the data's: eigen for NYU, kitti-garg for KITTI), eigen, densedepth "
            "(the original code's), kitti-garg or kitti-eigen."
        ),
    ] = Protocol.auto,
    limit: Annotated[int, typer.Option(min=0, help="Evaluate the first N images (0 = all).")] = 0,
    device: Annotated[Device, typer.Option(help="auto, cpu or cuda.")] = Device.auto,
    threads: Annotated[int, typer.Option(min=0, help="CPU threads (0 = engine default).")] = 0,
    out: Annotated[Path | None, typer.Option(help="Write the metrics as JSON here.")] = None,
) -> None:
    """Evaluate a model on a test set (NYU's Eigen protocol, KITTI's on KITTI data); print and
    save the metrics."""
    check_threads(threads)
    with user_errors():
        import json

        from densedepth.evaluation import CLAMP_FIRST, conversion_note, evaluate_dataset
        from densedepth.util.outputs import check_output_file, write_text_atomic
        from engines import load_runner

        if out is not None:
            check_output_file(out, ours=is_metrics_file)
        runner = load_runner(model, device=device.value, threads=threads)
        dataset = open_dataset(data, "test")
        metrics = evaluate_dataset(
            runner, dataset, runner.input_shape[2:], protocol=protocol.value, limit=limit
        )
        row = {"model": str(model), "data": getattr(dataset, "name", data), **metrics}
        if metrics.get("depth_conversion") == CLAMP_FIRST:
            typer.echo(f"note: {conversion_note(runner.name)}", err=True)
        if out is not None:  # before printing: a terminal that fails must not lose the result
            write_text_atomic(out, json.dumps(row, indent=2, default=float) + "\n")
        console.print(metrics_table(f"{row['data']} ({metrics['protocol']} protocol)", [row]))
        for line in range_summary(metrics.get("by_range", [])):
            console.print(line)
        if out is not None:
            console.print(f"saved {out}")


StrideOption = Annotated[int, typer.Option(min=1, help="Point cloud: every K-th pixel in x and y.")]
IntrinsicsOption = Annotated[
    str | None,
    typer.Option(help="Your camera: fx,fy,cx,cy[@WxH] in pixels (default: the training one)."),
]
CameraInfoOption = Annotated[
    Path | None,
    typer.Option(help="Your camera from a ROS camera_info / OpenCV calibration YAML or XML."),
]
FocalScaleOption = Annotated[
    str, typer.Option(help="Depth x f_deploy/f_train: none, auto, or a factor (docs/camera.md).")
]


@app.command()
def predict(
    model: Annotated[Path, typer.Argument(help="Checkpoint (.pt) or engine file.")],
    inputs: Annotated[list[Path], typer.Argument(help="Image files or folders.")],
    out: Annotated[Path, typer.Option(help="Output folder (its own).")] = Path("runs/predict"),
    overwrite: Annotated[bool, typer.Option(help="Replace a folder predict wrote before.")] = False,
    flip: Annotated[bool, typer.Option(help="Average with the mirrored prediction.")] = True,
    device: Annotated[Device, typer.Option(help="auto, cpu or cuda.")] = Device.auto,
    threads: Annotated[int, typer.Option(min=0, help="CPU threads (0 = engine default).")] = 0,
    pointcloud: Annotated[
        bool, typer.Option(help="Also NAME.ply: x y z metres (camera frame, OpenCV axes) + RGB.")
    ] = False,
    pointcloud_stride: StrideOption = 1,
    intrinsics: IntrinsicsOption = None,
    camera_info: CameraInfoOption = None,
    focal_scale: FocalScaleOption = "none",
) -> None:
    """Depth for images: NAME_depth.png (uint16 mm) and NAME_depth_jet.png per image, in a
    folder of its own (names that clash get their folder in front); --pointcloud adds NAME.ply."""
    check_threads(threads)
    with user_errors():
        from densedepth.camera import plan_camera
        from engines import load_runner
        from engines.predict import list_images, predict_files

        require_files([model, *inputs, *([camera_info] if camera_info else [])], "input")
        deploy = user_camera(intrinsics, camera_info)
        images = list_images(inputs)
        runner = load_runner(model, device=device.value, threads=threads)
        plan = plan_camera(runner.info.camera, deploy, focal_scale, need=pointcloud)
        stride = pointcloud_stride if pointcloud else 0
        with output_folder(out, overwrite, "predict", [model, *images]) as folder:
            written = predict_files(runner, images, folder, flip=flip, camera=plan,
                                    pointcloud_stride=stride, warn=stderr_line)  # fmt: skip
        extra = " + point clouds" if pointcloud else ""
        console.print(f"saved {len(written)} depth maps (+ jet PNGs{extra}) in {out}")


def user_camera(intrinsics: str | None, camera_info: Path | None) -> Any:
    """The camera --intrinsics or --camera-info gives (not both), None for neither."""
    from densedepth.camera import parse_intrinsics, read_camera_file
    from densedepth.util.errors import DataError

    if intrinsics and camera_info:
        raise DataError("--intrinsics and --camera-info both give the camera: pass one")
    if intrinsics:
        return parse_intrinsics(intrinsics)
    return read_camera_file(camera_info) if camera_info else None


@app.command()
def compare(
    models: Annotated[list[Path], typer.Argument(help="Two or more checkpoints or engines.")],
    data: Annotated[str, typer.Option(help="Test set path or 'synthetic'.")] = "synthetic",
    out: Annotated[Path, typer.Option(help="Report folder.")] = Path("runs/compare"),
    overwrite: Annotated[bool, typer.Option(help="Replace an existing report folder.")] = False,
    images: Annotated[int, typer.Option(min=1, help="Rows of the qualitative figure.")] = 4,
    protocol: Annotated[
        Protocol,
        typer.Option(help="auto (the data's), eigen, densedepth, kitti-garg, kitti-eigen."),
    ] = Protocol.auto,
    limit: Annotated[int, typer.Option(min=0, help="First N test images (0 = all).")] = 0,
    published: Annotated[bool, typer.Option(help="Add the paper's published row.")] = True,
    device: Annotated[Device, typer.Option(help="auto, cpu or cuda.")] = Device.auto,
    threads: Annotated[int, typer.Option(min=0, help="CPU threads (0 = engine default).")] = 0,
) -> None:
    """Evaluate models on the same test images; write report.md, report.json, compare.png."""
    check_threads(threads)
    with user_errors():
        from bench.compare import compare_models

        require_files(models)
        with output_folder(out, overwrite, "compare", models) as folder:
            report = compare_models(
                models,
                data,
                folder,
                images,
                protocol.value,
                limit,
                device.value,
                published,
                threads=threads,
            )
        console.print(metrics_table(f"{report['data']} ({report['protocol']})", report["measured"]))
        console.print(f"saved {out / 'report.md'}, {out / 'report.json'}, {report['figure']}")


@app.command()
def download(
    name: Annotated[
        str,
        typer.Argument(
            help="nyu-data, nyu-test, nyu-labeled, nyu-h5, kitti-h5, kitti-depth or kitti-raw."
        ),
    ],
    drives: Annotated[
        list[str] | None, typer.Argument(help="kitti-raw: drives, e.g. 2011_09_26_drive_0001.")
    ] = None,
    to: Annotated[Path, typer.Option(help="Folder to download into.")] = Path("data"),
    mirror: Annotated[
        str | None, typer.Option(help="Your own copy: BASE_URL (the file's name is appended).")
    ] = None,
    split: Annotated[
        str | None,
        typer.Option(
            help="kitti-raw: eigen (every drive BTS's Eigen split uses, 61), eigen-train (33) "
            "or eigen-test (28); also fetches the split's file lists."
        ),
    ] = None,
) -> None:
    """Fetch a dataset or the authors' models: resumable (rerun to continue), verified before
    the final name, sha256 recorded in TO/downloads.json; prints the command that uses it."""
    with user_errors():
        from densedepth.data.downloads import download as fetch_all
        from densedepth.data.downloads import next_command

        records = fetch_all(name, to, drives, mirror, split, log=stderr_line)
        for r in records:
            console.print(f"saved {to / r['file']} ({r['bytes'] / 1e6:,.1f} MB, sha256 "
                          f"{r['sha256']})", markup=False, highlight=False)  # fmt: skip
        typer.echo(f"next: {next_command(name, to)}")


class KerasDataset(str, Enum):
    nyu = "nyu"
    kitti = "kitti"


@app.command("import-keras")
def import_keras(
    source: Annotated[Path, typer.Argument(help="The authors' nyu.h5 / kitti.h5 (Keras HDF5).")],
    out: Annotated[Path, typer.Option(help="Checkpoint to write (.pt).")] = Path("nyu.pt"),
    dataset: Annotated[
        KerasDataset,
        typer.Option(help="Depth range: nyu (10/output, 0.1..10 m), kitti (80/output, 1..80 m)."),
    ] = KerasDataset.nyu,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing --out.")] = False,
) -> None:
    """Import a Keras DenseDepth model (the published nyu.h5 / kitti.h5) as a checkpoint."""
    with user_errors():
        from densedepth.keras_import import import_keras as run_import

        if out.suffix not in (".pt", ".pth"):
            raise DenseDepthError(f"--out {out} must end in .pt")
        with replacing(overwrite):
            claim_output(out)  # only a file the toolkit wrote, and only with --overwrite
        t0 = time.perf_counter()
        record = run_import(source, out, dataset.value)
        record_written(out)
        console.print(
            f"saved {out} ({out.stat().st_size / 1e6:.1f} MB, {time.perf_counter() - t0:.1f} s): "
            f"{record['backbone']}, decoder width {record['decoder_width']:g}, "
            f"{record['variant']}, {record['dataset']} depth range; from Keras "
            f"{record['keras_version'] or '?'} ({record['saved_with']})"
        )


class Exporter(str, Enum):
    torchscript = "torchscript"
    dynamo = "dynamo"


Target = Enum("Target", {t: t for t in ("auto", *BUILD_TARGETS)}, type=str)  # type: ignore[misc]


class CalibMethod(str, Enum):
    minmax = "minmax"
    entropy = "entropy"
    percentile = "percentile"


@app.command()
def export(
    checkpoint: Annotated[Path, typer.Argument(help="Training checkpoint (.pt).")],
    out: Annotated[
        Path | None,
        typer.Option(
            help="ONNX file (default: RUN/export/model_fp32.onnx, or model_qat_int8.onnx for a "
            "QAT checkpoint)."
        ),
    ] = None,
    input_size: Annotated[
        str | None, typer.Option(help="HEIGHTxWIDTH (default: the training size).")
    ] = None,
    opset: Annotated[int, typer.Option(help="ONNX opset (13..20).")] = 17,
    exporter: Annotated[Exporter, typer.Option(help="torch.onnx exporter.")] = (
        Exporter.torchscript
    ),
    dynamic_batch: Annotated[bool, typer.Option(help="Make the batch dimension dynamic.")] = False,
    tolerance: Annotated[float, typer.Option(help="Max |ORT - PyTorch| in metres.")] = 1e-3,
    overwrite: Annotated[bool, typer.Option(help="Replace an ONNX file export wrote.")] = False,
) -> None:
    """Checkpoint -> deployable ONNX (RGB [0,1] in, metres out), checked against PyTorch."""
    with user_errors(), replacing(overwrite):
        from export.artifact import saved_line
        from export.onnx_export import default_onnx_path, export_onnx

        size = parse_size(input_size) if input_size else None
        target = out or default_onnx_path(checkpoint)
        record = export_onnx(
            checkpoint, target, size, opset, exporter.value, dynamic_batch, tolerance
        )
        console.print(saved_line(record))
        bound = f"tolerance {tolerance:g}"
        if record.get("int8_producer") == "qat":
            bound = (
                "INT8 from QAT vs its fake quantization, not bounded: float differences "
                "upstream of a quantizer cross rounding boundaries"
            )
        console.print(
            f"parity: max |ONNX Runtime - PyTorch| = {record['parity_max_abs_m']:.2e} m "
            f"({bound}); {record['backbone']}, input "
            f"{record['input_size'][0]}x{record['input_size'][1]}, opset {opset}"
        )


class Quantizer(str, Enum):
    auto = "auto"
    modelopt = "modelopt"
    onnxruntime = "onnxruntime"


def parse_trt_version(text: str | None) -> tuple[int, int] | None:
    """``"8.6"`` -> (8, 6); a clear error otherwise."""
    if text is None:
        return None
    from export.tensorrt_versions import parse_version

    return parse_version(text)


@app.command("build-engine")
def build_engine(
    source: Annotated[Path, typer.Argument(help="The fp32 ONNX from `export` (or a .pt).")],
    target: Annotated[
        Target,
        typer.Option(
            help="onnx (CPU), tensorrt (GPU), openvino, or auto: the format `bench` recommends "
            "for this machine (measured now, or --from-bench)."
        ),
    ] = Target.onnx,
    int8: Annotated[bool, typer.Option("--int8", help="INT8 (calibrated Q/DQ).")] = False,
    fp16: Annotated[
        bool, typer.Option("--fp16", help="FP16 (with --int8 on TensorRT: FP16 float layers).")
    ] = False,
    bf16: Annotated[bool, typer.Option("--bf16", help="BF16 (OpenVINO).")] = False,
    calib: Annotated[
        str | None,
        typer.Option(help="Calibration data: dataset, image folder or 'synthetic'."),
    ] = None,
    calib_images: Annotated[int, typer.Option(min=1, help="Calibration images.")] = 500,
    method: Annotated[CalibMethod, typer.Option(help="Calibration method.")] = (CalibMethod.minmax),
    quantizer: Annotated[
        Quantizer,
        typer.Option(help="TensorRT Q/DQ writer: modelopt (NVIDIA ModelOpt), onnxruntime, auto."),
    ] = Quantizer.auto,
    keep_float: Annotated[
        list[str] | None,
        typer.Option(help="Keep in float: input-norm, first-conv, last-conv, depth-out, NODE."),
    ] = None,
    keep_float_from_sidecar: Annotated[
        Path | None,
        typer.Option(
            "--keep-float-from", help="Keep in float what this INT8 build's sidecar lists."
        ),
    ] = None,
    out_dir: Annotated[Path | None, typer.Option(help="Folder (default: beside SOURCE).")] = None,
    onnx_only: Annotated[
        bool,
        typer.Option(
            "--onnx-only", help="TensorRT: write and check the ONNX the build parses; no GPU."
        ),
    ] = False,
    trt_version: Annotated[
        str | None,
        typer.Option(help="Plan for this TensorRT (e.g. 8.6); default: the installed one."),
    ] = None,
    workspace: Annotated[float, typer.Option(help="TensorRT workspace, GiB.")] = 2.0,
    timing_cache: Annotated[Path | None, typer.Option(help="TensorRT timing cache file.")] = None,
    max_batch: Annotated[int, typer.Option(min=1, help="TensorRT profile max batch.")] = 1,
    opt_batch: Annotated[
        int,
        typer.Option(min=1, help="TensorRT profile opt batch: the batch kernels are tuned for."),
    ] = 1,
    opt_level: Annotated[
        int | None, typer.Option(min=0, max=5, help="TensorRT builder optimisation level.")
    ] = None,
    hardware_compat: Annotated[
        str, typer.Option(help="TensorRT: none, ampere_plus, same_compute_capability.")
    ] = "none",
    version_compatible: Annotated[
        bool, typer.Option(help="TensorRT: an engine later versions of its major can run.")
    ] = False,
    build_log: Annotated[
        Path | None, typer.Option(help="TensorRT: write the verbose build log to this file.")
    ] = None,
    legacy_calibrator: Annotated[
        bool,
        typer.Option(
            help="TensorRT < 11: IInt8EntropyCalibrator2 instead of Q/DQ (10.x: deprecated)."
        ),
    ] = False,
    dla_core: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="TensorRT on Jetson Orin: run on this DLA core (FP16, or INT8 with "
            "--legacy-calibrator; static batch --max-batch).",
        ),
    ] = None,
    gpu_fallback: Annotated[
        bool, typer.Option(help="With --dla-core: layers DLA cannot run go to the GPU.")
    ] = False,
    from_bench: Annotated[
        Path | None, typer.Option(help="--target auto: take the pick of this bench.json.")
    ] = None,
    data: Annotated[
        str, typer.Option(help="--target auto: test set scoring each format's δ1.")
    ] = "synthetic",
    limit: Annotated[int, typer.Option(min=1, help="--target auto: test images.")] = 32,
    max_drop: Annotated[
        float,
        typer.Option(
            min=0.0,
            help="The largest δ1 loss against FP32: every INT8 build's accuracy budget "
            "on held-out images, and --target auto's pick.",
        ),
    ] = 0.01,
    max_rel_rise: Annotated[
        float | None, typer.Option(min=0.0, help="INT8 budget: and at most this rise of rel.")
    ] = None,
    max_range_drop: Annotated[
        float,
        typer.Option(
            min=0.0,
            help="INT8 budget: and at most this δ1 loss in any depth range holding 5% of the "
            "pixels (1 turns the per-range gate off).",
        ),
    ] = 0.05,
    val_data: Annotated[
        str | None,
        typer.Option(
            help="INT8 budget: held-out images (default: the training data's "
            "validation split, left out of calibration)."
        ),
    ] = None,
    val_images: Annotated[int, typer.Option(min=1, help="INT8 budget: images scored.")] = 64,
    budget: Annotated[
        bool, typer.Option(help="INT8: judge the build on held-out images (exit 1 on a miss).")
    ] = True,
    fallback: Annotated[
        bool,
        typer.Option(help="INT8 budget missed: leave the fewest groups in float that meet it."),
    ] = True,
    overwrite: Annotated[
        bool, typer.Option(help="Replace files build-engine wrote before in the folder.")
    ] = False,
) -> None:
    """Build a deployable engine: ONNX INT8/FP16, TensorRT FP16/INT8, OpenVINO FP32/BF16/INT8."""
    with user_errors(), replacing(overwrite):
        from bench.choose import AutoSettings, build_auto
        from export.build import BuildOptions, build_from, build_summary, keep_float_from
        from export.formats import format_for_flags
        from export.int8_budget import AccuracyBudget

        fmt, int8_float = format_for_flags(target.value, int8, fp16, bf16, onnx_only)
        opts = BuildOptions(
            method=method.value,
            keep_float=keep_float_from(keep_float, keep_float_from_sidecar),
            workspace_gb=workspace, timing_cache=str(timing_cache) if timing_cache else None,
            max_batch=max_batch, opt_batch=opt_batch, opt_level=opt_level,
            hardware_compat=hardware_compat, version_compatible=version_compatible,
            build_log=str(build_log) if build_log else None, dla_core=dla_core,
            gpu_fallback=gpu_fallback, legacy_calibrator=legacy_calibrator,
            int8_float=int8_float, producer=quantizer.value,
            trt_version=parse_trt_version(trt_version), onnx_only=onnx_only, calib_source=calib,
            calib_images=calib_images,
            budget=AccuracyBudget(max_drop, max_rel_rise, val_data, val_images, fallback,
                                  max_range_drop) if budget else None,
        )  # fmt: skip
        out = out_dir or source.parent
        if fmt is None:
            auto = AutoSettings(data, limit, max_drop, from_bench)
            fmt, record = build_auto(source, out, auto, opts, console_log, stderr_line)
        else:
            record = build_from(source, fmt, out, opts, console_log, stderr_line)
        for line in build_summary(fmt, record, source, opts):
            console_log(line)
        if record.get("onnx_only") or record.get("measured"):
            typer.echo(record["path"])


class CheckFor(str, Enum):
    tensorrt = "tensorrt"
    dla = "dla"


@app.command("int8-report")
def int8_report(
    model: Annotated[Path, typer.Argument(help="The fp32 ONNX from `export`.")],
    out: Annotated[Path, typer.Option(help="Report folder.")] = Path("runs/int8-report"),
    overwrite: Annotated[bool, typer.Option(help="Replace a report folder it wrote.")] = False,
    calib: Annotated[
        str | None, typer.Option(help="Calibration data (default: the training data).")
    ] = None,
    calib_images: Annotated[int, typer.Option(min=1, help="Calibration images.")] = 500,
    method: Annotated[CalibMethod, typer.Option(help="Calibration method.")] = CalibMethod.minmax,
    flavour: Annotated[
        str, typer.Option(help="Q/DQ flavour: cpu (ONNX Runtime) or tensorrt (run on the CPU).")
    ] = "cpu",
    val_data: Annotated[
        str | None,
        typer.Option(help="Held-out images (default: the training data's validation split)."),
    ] = None,
    images: Annotated[int, typer.Option(min=1, help="Held-out images scored per group.")] = 8,
    groups: Annotated[int, typer.Option(min=0, help="Only the first N Conv groups (0: all).")] = 0,
    top: Annotated[int, typer.Option(min=1, help="Groups in the table and the plot.")] = 20,
    quantizer: Annotated[
        Quantizer,
        typer.Option(help="--flavour tensorrt: the Q/DQ writer (modelopt, onnxruntime, auto)."),
    ] = Quantizer.auto,
    fp16: Annotated[
        bool,
        typer.Option("--fp16", help="--flavour tensorrt: FP16 float layers (--int8 --fp16)."),
    ] = False,
) -> None:
    """Per-layer INT8 sensitivity: each Conv group alone left in float, ranked by δ1 recovered."""
    with user_errors():
        from export.build import BuildOptions
        from export.int8_budget import AccuracyBudget
        from export.int8_report import int8_report as make_report

        require_files([model])
        if flavour != "tensorrt" and (fp16 or quantizer != Quantizer.auto):
            raise fail("--fp16 and --quantizer are for --flavour tensorrt (the CPU flavour has "
                       "one writer, ONNX Runtime, and FP32 float layers)")  # fmt: skip
        opts = BuildOptions(method=method.value, calib_source=calib, calib_images=calib_images,
                            budget=AccuracyBudget(val_data=val_data), producer=quantizer.value,
                            int8_float="fp16" if fp16 else "fp32")  # fmt: skip
        with output_folder(out, overwrite, "int8-report", [model]) as folder:
            result, files = make_report(model, folder, opts, images, flavour, groups, top,
                                        console_log)  # fmt: skip
        table = Table(title=f"INT8 sensitivity (full INT8 δ1 {result['int8']['delta1']:.4f}, "
                            f"fp32 {result['fp32']['delta1']:.4f})")  # fmt: skip
        for col in ("rank", "group (node)", "δ1 recovered", "δ1 gain", "err drop m"):
            table.add_column(col, overflow="fold")
        for rank, r in enumerate(result["ranked"][:top], 1):
            table.add_row(str(rank), r["node"], f"{r['delta1_recovered']:+.4f}",
                          f"{r['delta1_gain']:+.4f}", f"{r['abs_err_drop_m']:+.4f}")  # fmt: skip
        console.print(table)
        console.print(f"saved {', '.join(map(str, files))}")


@app.command("check-onnx")
def check_onnx(
    file: Annotated[Path, typer.Argument(help="ONNX file to check.")],
    for_: Annotated[CheckFor, typer.Option("--for", help="Whose rules.")] = CheckFor.tensorrt,
    trt_version: Annotated[
        str | None, typer.Option(help="TensorRT version, e.g. 8.6 (default: the newest known).")
    ] = None,
    compare: Annotated[
        Path | None,
        typer.Option(help="Instead: run this engine / Q/DQ ONNX beside FILE (fp32) and compare."),
    ] = None,
    data: Annotated[str, typer.Option(help="--compare: test data or RGB folder.")] = "synthetic",
    limit: Annotated[int, typer.Option(min=1, help="--compare: images.")] = 8,
    tolerance: Annotated[
        float | None, typer.Option(min=0.0, help="--compare: exit 1 above this max error (m).")
    ] = None,
) -> None:
    """Check an ONNX file against TensorRT's rules: one line per violation, exit 1 when any;
    with --compare, the candidate's depths against FILE's (errors in metres, δ1 agreement)."""
    with user_errors():
        from export.trt_check import check_onnx_file, flavour_note, generation_for

        if compare is not None:
            return print_parity(file, compare, data, limit, tolerance)
        if for_ is CheckFor.dla:
            return print_dla(file)

        version = parse_trt_version(trt_version)
        gen = generation_for(version)
        findings = check_onnx_file(file, version)
        note = flavour_note(file)
        rules = f"TensorRT {gen.since[0]}.{gen.since[1]}+ parser rules"
        if note:
            typer.echo(f"not for TensorRT: {note}")
        for finding in findings:
            typer.echo(finding.line())
        if findings:
            typer.echo(f"{file}: {len(findings)} violation(s) of {rules}", err=True)
            raise typer.Exit(1)
        typer.echo(f"{file}: 0 violations of {rules}")


def print_dla(file: Path) -> None:
    """``check-onnx --for dla``: one line per node DLA cannot run, the summary; exit 1 if any."""
    from export.dla_check import check_dla, dla_summary
    from export.trt_check import read_onnx

    model = read_onnx(file)
    findings = check_dla(model)
    for finding in findings:
        typer.echo(finding.line())
    typer.echo(f"{file}: {dla_summary(model, findings)}", err=bool(findings))
    if findings:
        raise typer.Exit(1)


def print_parity(file: Path, candidate: Path, data: str, limit: int, tol: float | None) -> None:
    """``check-onnx --compare``: the parity line; exit 1 above ``tol`` metres."""
    from bench.compare import compare_outputs, parity_line

    require_files([file, candidate])
    result = compare_outputs(file, candidate, data, limit)
    typer.echo(parity_line(result))
    if tol is not None and result["max_abs_m"] > tol:
        typer.echo(f"{candidate}: max error {result['max_abs_m']:.4f} m > {tol:g} m", err=True)
        raise typer.Exit(1)


def bench_table(rows: list[dict]) -> Table:
    """Latency, ratios and accuracy per bench row (rich); reasons go in a caption."""
    from rich.markup import escape

    from bench.report import batch_text, number_cell, row_label, size_text

    table = Table(title="bench: p50 of one batch, speed-up vs PyTorch eager FP32")
    energy = any("power_w" in r for r in rows)
    gpu = any("gpu_p50_ms" in r for r in rows)
    columns = ["model", "input", "batch", "status", "p50 ms", *(["GPU ms"] if gpu else []),
               "FPS", "speed-up", "GOP/s", "δ1", "Δδ1",
               *(["W", "mJ/img"] if energy else [])]  # fmt: skip
    for col in columns:
        table.add_column(col, overflow="fold")
    notes = []
    for i, r in enumerate(rows, 1):
        status = r["status"]
        if status != "ok":
            notes.append(f"[{i}] {status}: {r.get('reason', '')}")
            status = f"{status} [{i}]"
        cells = [
            number_cell(r.get(k), fmt)
            for k, fmt in (
                ("p50_ms", ".2f"),
                *((("gpu_p50_ms", ".3f"),) if gpu else ()),
                ("fps", ".1f"),
                ("speedup_vs_eager", ".2f"),
                ("gops", ".1f"),
                ("delta1", ".4f"),
                ("delta1_drop", "+.4f"),
                *((("power_w", ".2f"), ("mj_per_image", ".1f")) if energy else ()),
            )
        ]
        table.add_row(escape(row_label(r)), size_text(r), batch_text(r), escape(status), *cells)
    if notes:
        table.caption = escape("\n".join(notes))
        table.caption_justify = "left"
    return table


def parse_batches(values: list[int] | None) -> tuple[int, ...]:
    """The batch sweep (default: batch 1), positive sizes only."""
    batches = tuple(values or (1,))
    if any(b < 1 for b in batches):
        raise DenseDepthError(f"batch sizes must be >= 1, got {list(batches)}")
    return batches


QueueDelayOption = Annotated[
    int, typer.Option(min=0, help="Dynamic batching's max queue delay (microseconds).")
]


@app.command("triton-repo")
def triton_repo(
    models: Annotated[
        list[Path], typer.Argument(help=".engine/.plan (TensorRT), .onnx, .xml (OpenVINO) files.")
    ],
    out: Annotated[Path, typer.Option(help="Repository folder to write.")] = Path("triton-repo"),
    overwrite: Annotated[bool, typer.Option(help="Replace an existing repository.")] = False,
    max_batch: Annotated[
        int, typer.Option(min=1, help="max_batch_size of dynamic-batch ONNX / IR models.")
    ] = 8,
    instances: Annotated[int, typer.Option(min=1, help="instance_group count per model.")] = 1,
    queue_delay_us: QueueDelayOption = 2000,
    accelerator: Annotated[
        str, typer.Option(help="ONNX models: none, tensorrt or openvino execution accelerator.")
    ] = "none",
) -> None:
    """Write a Triton model repository: one model per file, config.pbtxt read from the file
    and checked against Triton's own ModelConfig protobuf."""
    with user_errors():
        from serve.repository import plan_repository, write_repository

        plan = plan_repository(models, max_batch, instances, queue_delay_us, accelerator)
        with output_folder(out, overwrite, "triton-repo", models) as folder:
            write_repository(plan, folder)
        served = [m for m, _ in plan]
        for m in served:
            typer.echo(f"{m.name}: {m.kind}, input {m.input.name} {list(m.input.shape)}, "
                       f"max_batch_size {m.max_batch_size} ({m.batch_note})")  # fmt: skip
        typer.echo(f"saved {out} ({len(served)} models; each config.pbtxt parsed by Triton's "
                   f"ModelConfig): tritonserver --model-repository {out}")  # fmt: skip


@app.command()
def serve(
    model: Annotated[Path, typer.Argument(help="Any model file the toolkit runs.")],
    name: Annotated[str, typer.Option(help="Model name on the server (default: file stem).")] = "",
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, help="HTTP port (0: a free one).")] = 8000,
    grpc_port: Annotated[int, typer.Option(min=0, help="gRPC port (0: a free one).")] = 8001,
    max_batch: Annotated[int, typer.Option(min=1, help="Dynamic batching's largest batch.")] = 8,
    queue_delay_us: QueueDelayOption = 2000,
    threads: Annotated[int, typer.Option(min=0, help="CPU threads (0 = default).")] = 0,
    device: Annotated[Device, typer.Option(help="auto, cpu or cuda.")] = Device.auto,
) -> None:
    """Serve MODEL on a real Triton server (NVIDIA PyTriton, from the serving environment:
    make serve-env), dynamic batching on; Ctrl-C stops it."""
    with user_errors():
        import signal
        import time

        from export.formats import format_for_suffix
        from serve.launch import last_error, start_server
        from serve.repository import NAME_RE, model_name

        check_threads(threads)
        if format_for_suffix(model.suffix) is None or not model.is_file():
            raise fail(f"{model}: not a model file the toolkit runs (checkpoint, .onnx, .xml, "
                       f".engine)")  # fmt: skip
        name = name or model_name(model)
        if not NAME_RE.match(name):
            raise fail(f"--name {name!r}: Triton takes letters, digits, '.', '_', '-'")
        server = start_server(model, name, host, port, grpc_port, max_batch, queue_delay_us,
                              threads, device.value)  # fmt: skip
        with server:
            typer.echo(f"serving {name} at http://{server.http_url} (gRPC {server.grpc_url}), "
                       f"dynamic batching up to {max_batch}; Ctrl-C stops it")  # fmt: skip
            try:
                while server.process.poll() is None:
                    time.sleep(0.5)
            except KeyboardInterrupt:
                signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C: let it stop
                typer.echo("stopping", err=True)
            code = server.process.poll()
            why = last_error(server.log_path) if code not in (None, 0) else ""
        if why:
            raise fail(f"the Triton server stopped by itself (exit {code}): {why}")
        typer.echo("stopped")


@app.command()
def bench(
    models: Annotated[
        list[Path] | None,
        typer.Argument(help="Checkpoints, .onnx, .xml, .engine files, or run folders (all in it)."),
    ] = None,
    out: Annotated[Path, typer.Option(help="Report folder.")] = Path("runs/bench"),
    overwrite: Annotated[bool, typer.Option(help="Replace an existing report folder.")] = False,
    iters: Annotated[int, typer.Option(min=1, help="At least this many timed runs.")] = 20,
    min_time: Annotated[float, typer.Option(min=0.0, help="And at least this many seconds.")] = 2.0,
    warmup: Annotated[int, typer.Option(min=0, help="Untimed runs first.")] = 3,
    warmup_ms: Annotated[
        float, typer.Option(min=0.0, help="And at least this long (trtexec's --warmUp: 200).")
    ] = 200.0,
    cuda_graph: Annotated[
        bool, typer.Option(help="TensorRT: time GPU compute as CUDA graph launches.")
    ] = False,
    trtexec: Annotated[
        bool,
        typer.Option(
            "--trtexec", help="TensorRT: also run trtexec --loadEngine on each engine, beside ours."
        ),
    ] = False,
    batch: Annotated[
        list[int] | None, typer.Option(help="Batch size; repeat for a throughput sweep.")
    ] = None,
    threads: Annotated[int, typer.Option(min=0, help="CPU threads (0 = engine default).")] = 0,
    device: Annotated[Device, typer.Option(help="auto, cpu or cuda.")] = Device.auto,
    data: Annotated[str, typer.Option(help="Test set for accuracy, or 'synthetic'.")] = (
        "synthetic"
    ),
    accuracy: Annotated[bool, typer.Option(help="Measure δ1 etc. on --data.")] = True,
    limit: Annotated[int, typer.Option(min=0, help="First N test images (0 = all).")] = 0,
    protocol: Annotated[
        Protocol,
        typer.Option(help="auto (the data's), eigen, densedepth, kitti-garg, kitti-eigen."),
    ] = Protocol.auto,
    build: Annotated[
        list[str] | None,
        typer.Option(help="Build these formats from each checkpoint first: all, onnx-int8, ..."),
    ] = None,
    input_size: Annotated[
        list[str] | None,
        typer.Option(
            help="HEIGHTxWIDTH that built formats and checkpoints run at (default: the training "
            "size); repeat for a resolution sweep from the same checkpoint."
        ),
    ] = None,
    calib: Annotated[
        str | None, typer.Option(help="Calibration data for INT8 builds (default: training data).")
    ] = None,
    calib_images: Annotated[int, typer.Option(min=1, help="Calibration images.")] = 500,
    max_drop: Annotated[
        float, typer.Option(min=0.0, help="Recommend the fastest row losing at most this δ1.")
    ] = 0.01,
    max_power: Annotated[
        float | None,
        typer.Option(min=0.0, help="And drawing at most this mean power (W; needs a sensor)."),
    ] = None,
    peak: Annotated[
        bool,
        typer.Option(
            "--peak",
            help="First measure this machine's fp32, bf16 and int8 GEMM peaks and give each "
            "CPU row's GOP/s as a share of its precision's (without MODEL: the peaks only).",
        ),
    ] = False,
    camera: Annotated[
        bool, typer.Option("--camera", help="Live mode: run MODEL on --source frames.")
    ] = False,
    source: Annotated[
        str, typer.Option(help="--camera input: device index, video file or stream URL.")
    ] = "0",
    frames: Annotated[int, typer.Option(min=0, help="--camera: stop after N frames.")] = 0,
    duration: Annotated[float, typer.Option(min=0.0, help="--camera: stop after S s.")] = 0.0,
    record: Annotated[Path | None, typer.Option(help="--camera: write the view to MP4.")] = None,
    display: Annotated[
        bool | None, typer.Option(help="--camera: window (default: when a display exists).")
    ] = None,
    newest_frame: Annotated[
        bool | None,
        typer.Option(
            "--newest-frame/--every-frame",
            help="--camera: run the newest frame, skipping those a slow model cannot keep up "
            "with (default for cameras and streams), or every frame (default for files).",
        ),
    ] = None,
    record_depth: Annotated[
        Path | None,
        typer.Option(help="--camera: each frame's depth as 16-bit PNG (mm) into this folder."),
    ] = None,
    pointcloud: Annotated[
        bool, typer.Option(help="--camera --record-depth: and a PLY every --pointcloud-every.")
    ] = False,
    pointcloud_every: Annotated[
        int, typer.Option(min=1, help="--camera --pointcloud: frames between point clouds.")
    ] = 30,
    pointcloud_stride: StrideOption = 1,
    intrinsics: IntrinsicsOption = None,
    camera_info: CameraInfoOption = None,
    focal_scale: FocalScaleOption = "none",
    server: Annotated[
        str | None,
        typer.Option(help="A Triton server, HOST:PORT (--server-protocol): bench its --model."),
    ] = None,
    model: Annotated[str | None, typer.Option(help="--server: the served model's name.")] = None,
    server_protocol: Annotated[
        str, typer.Option(help="--server: http or grpc (the port's protocol).")
    ] = "http",
    concurrency: Annotated[
        list[int] | None,
        typer.Option(min=1, help="--server: concurrent clients per level (default 1 2 4 8)."),
    ] = None,
    requests: Annotated[
        int, typer.Option(min=1, help="--server: requests per concurrency level.")
    ] = 64,
) -> None:
    """Latency and accuracy of every engine (table, JSON, CSV, Markdown, Pareto plot), or with
    --camera a live run on a camera, video file or stream; with --server a model on a Triton
    server too, and its concurrency sweep."""
    check_threads(threads)
    with user_errors():
        from bench.camera import camera_bench
        from bench.harness import BenchOptions, check_bench_tools, failed_rows_warning, run_bench
        from bench.peak import measure_peaks, peaks_line
        from export.formats import formats_for_keys

        if camera:
            require_files([camera_info] if camera_info else [], "input")
            cameras = {"intrinsics": user_camera(intrinsics, camera_info),
                       "focal_scale": focal_scale, "pointcloud_stride": pointcloud_stride,
                       "pointcloud_every": pointcloud_every if pointcloud else 0}  # fmt: skip
            live = {"frames": frames, "duration": duration, "record": record, "display": display,
                    "newest_frame": newest_frame, "record_depth": record_depth,
                    "camera": cameras}  # fmt: skip
            result, files = camera_bench(models or [], source, out, overwrite, device.value,
                                         threads, live, console_log, stderr_line)  # fmt: skip
            return print_camera(result, files)
        opts = BenchOptions(iters=iters, min_time=min_time, warmup=warmup, warmup_ms=warmup_ms,
                            cuda_graph=cuda_graph, trtexec=trtexec, batches=parse_batches(batch),
                            threads=threads, device=device.value,
                            data=data if accuracy else None, protocol=protocol.value,
                            limit=limit, build=formats_for_keys(build),
                            input_sizes=tuple(dict.fromkeys(map(parse_size, input_size or ()))),
                            calib=calib, calib_images=calib_images, max_drop=max_drop,
                            max_power=max_power, peak=peak)  # fmt: skip
        if server is not None:
            from bench.server_load import LEVELS, check_server, server_bench

            if not model:
                raise DenseDepthError("--server needs --model NAME (the served model's name)")
            require_files(models or [])
            check_server(server, server_protocol)  # before the report folder is made
            levels = tuple(concurrency or LEVELS)
            with output_folder(out, overwrite, "bench", models or []) as folder:
                result = server_bench(server, model, server_protocol, folder, opts, models or [],
                                      levels, requests, console_log)  # fmt: skip
            return print_bench(result)
        if not models and peak:
            return console.print(peaks_line(measure_peaks(threads=threads)))
        if not models:
            raise DenseDepthError("bench needs at least one MODEL (file or folder)")
        require_files(models)
        check_bench_tools(opts)  # (trtexec) before the report folder is made
        with output_folder(out, overwrite, "bench", models) as folder:
            result = run_bench(models, folder, opts, log=console_log)
        print_bench(result)
        if warning := failed_rows_warning(result["rows"]):  # (raises when no row succeeded)
            typer.echo(f"warning: {warning}", err=True)


def print_bench(result: dict) -> None:
    """The bench table, the recommendations and the files written."""
    from bench.recommend import nothing_fits_line, recommendation_line

    console.print(bench_table(result["rows"]))
    for pick in result["recommended"]:
        console_log(recommendation_line(pick))
    budget = result["options"].get("max_power")
    scored = any("delta1_drop" in r for r in result["rows"])  # (no accuracy: no pick at all)
    if budget is not None and scored and not result["recommended"]:
        console_log(nothing_fits_line(result["rows"], budget))
    console.print(f"saved {', '.join(result['files'])}")


def print_camera(result: dict, files: Sequence[Path]) -> None:
    """``bench --camera``'s stage times and memory, and the files written."""
    from rich.markup import escape

    from bench.camera import (
        STAGE_COLUMNS,
        camera_table_rows,
        endurance_line,
        flicker_line,
        memory_line,
        record_depth_line,
        summary_line,
    )

    caption = f"{endurance_line(result)}\n{memory_line(result)}\n{flicker_line(result)}"
    if result.get("record_depth"):
        caption += f"\n{record_depth_line(result)}"
    table = Table(title=escape(summary_line(result)), caption=escape(caption))
    for col in STAGE_COLUMNS:
        table.add_column(col)
    for row in camera_table_rows(result):
        table.add_row(*row)
    console.print(table)
    console.print(f"saved {', '.join(map(str, files))}")


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Report folder.")] = Path("runs/demo"),
    overwrite: Annotated[bool, typer.Option(help="Replace an existing report folder.")] = False,
    input_size: Annotated[str, typer.Option(help="Network input HEIGHTxWIDTH.")] = "64x96",
    steps: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Training steps per backbone (default: 150 in fp32; as many more as bf16 "
            "trains in that time where the CPU has AMX or AVX512-BF16).",
        ),
    ] = None,
    train_scenes: Annotated[int, typer.Option(min=1, help="Synthetic training scenes.")] = 600,
    test_scenes: Annotated[int, typer.Option(min=1, help="Held-out test scenes.")] = 48,
    device: Annotated[Device, typer.Option(help="auto, cpu or cuda.")] = Device.auto,
) -> None:
    """The main job: synthetic data -> train both backbones -> evaluate -> compare -> report."""
    with user_errors():
        from demo import DemoConfig, run_demo

        size = parse_size(input_size)
        with output_folder(out, overwrite, "demo") as folder:
            cfg = DemoConfig(
                out=folder,
                input_size=size,
                steps=steps,
                train_scenes=train_scenes,
                test_scenes=test_scenes,
                device=device.value,
            )
            result = run_demo(cfg, console, lambda ds: console.print(dataset_table(ds, 4)[0]))
        console.print(f"demo finished in {result['wall_seconds']:.0f} s; report: {out / 'demo.md'}")


def main(argv: list[str] | None = None) -> None:
    """Entry point (``python cli.py ...``): SIGTERM is handled as Ctrl-C (exit 143)."""
    from densedepth.util.signals import handle_sigterm

    handle_sigterm()
    app(args=argv)


if __name__ == "__main__":
    main(sys.argv[1:])
