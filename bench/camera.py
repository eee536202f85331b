"""Live depth from a camera, video file or stream: capture -> preprocess -> inference -> display.

``run_camera`` reads frames from ``open_source(source)``, runs any runner on each, draws the jet
depth map beside the frame with the smoothed FPS and the inference latency, shows it in a window
and/or records it, and times the four stages of every frame separately (the first ``warmup``
frames are counted but left out of the statistics). It samples the process's resident memory
every ``rss_every`` frames, so a long run shows whether memory grows.

Behaviour at the edges:

- a source that cannot be opened, or opens but delivers no first frame, raises ``CameraError``
  with one line naming it; a source that stops later (camera unplugged, truncated file, end of
  the video) ends the run cleanly, ``ended`` saying so;
- a runner that fails raises ``DenseDepthError`` naming the frame, after everything is released
  and a partial recording removed; Ctrl-C ends the run cleanly (``ended="interrupted"``);
- ``display=None`` opens a window only when there is a display (on Linux ``DISPLAY`` or
  ``WAYLAND_DISPLAY``) and OpenCV was built with a GUI; the first failing ``imshow`` falls back
  to headless, and the result says why it ran headless.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import threading
import time
from array import array
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from bench.depth_record import DepthRecorder
from bench.flicker import STILL_THRESHOLD, FlickerMeter
from bench.power import energy_fields, power_sampler
from densedepth.data.preprocess import rgb_to_input
from densedepth.data.video import VideoFileWriter
from densedepth.depth import MAX_DEPTH, MIN_DEPTH
from densedepth.util.errors import DenseDepthError, error_line, missing_reason
from densedepth.util.files import require_files
from densedepth.util.outputs import OutputFolder, atomic_path, claim_output, replacing
from densedepth.viz import colorize

STAGES = ("capture", "preprocess", "inference", "display")
STAGE_COLUMNS = ("stage", "mean ms", "p50 ms", "p90 ms", "p99 ms", "total s")
_ESC = 27


class CameraError(DenseDepthError):
    """A camera, video file or stream cannot be opened or delivers no frames."""


class Capture(Protocol):
    """What ``run_camera`` needs of a capture (``cv2.VideoCapture`` or a stand-in)."""

    def read(self) -> tuple[bool, np.ndarray | None]: ...

    def release(self) -> None: ...


# ---------------------------------------------------------------------------------------------
# Opening a source
# ---------------------------------------------------------------------------------------------


@contextmanager
def _quiet_opencv() -> Iterator[None]:
    """Silence OpenCV's own warnings (e.g. V4L2 "can't open camera by index") for a moment."""
    try:
        old = cv2.utils.logging.getLogLevel()
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    except (AttributeError, cv2.error):
        yield
        return
    try:
        yield
    finally:
        cv2.utils.logging.setLogLevel(old)


def is_live_source(source: str) -> bool:
    """A camera index, a GStreamer pipeline or a stream URL (not a video file): frames come
    at the source's pace, so a slow model should take the newest one."""
    text = str(source).strip()
    return text.isdigit() or " ! " in text or "://" in text


def open_source(source: str) -> cv2.VideoCapture:
    """Open ``source``: digits are a camera index, ``a ! b ! appsink`` a GStreamer pipeline,
    ``scheme://...`` a stream URL, anything else a video file (pass ``./0`` for a file named
    ``0``). Raises ``CameraError`` with one line."""
    text = str(source).strip()
    args: tuple[Any, ...]
    if text.isdigit():
        args = (int(text),)
        why = (
            f"cannot open camera index {int(text)}: no such device, or it is busy; list cameras "
            f"with `v4l2-ctl --list-devices` or pass a video file"
        )
    elif " ! " in text:  # a GStreamer pipeline, e.g. a Jetson CSI camera (nvarguscamerasrc)
        args = (text, cv2.CAP_GSTREAMER)
        why = (
            "cannot open the GStreamer pipeline: the pipeline is wrong (test it with "
            "gst-launch-1.0) or this OpenCV lacks GStreamer (pip wheels do; JetPack's has it)"
        )
    elif "://" in text:
        args = (text,)
        why = (
            f"cannot open stream {text}: no answer or not a video stream; check the address "
            f"and that the stream is live (try `ffprobe {text}`)"
        )
    else:
        path = _check_video_file(Path(text))
        args = (str(path),)
        why = (
            f"cannot open video {path}: not a readable video (corrupt, truncated or a format "
            f"FFmpeg cannot decode); check it with `ffprobe {path}`"
        )
    with _quiet_opencv():
        cap = cv2.VideoCapture(*args)
    if not cap.isOpened():
        cap.release()
        raise CameraError(why)
    return cap


def _check_video_file(path: Path) -> Path:
    """``path`` when it is a non-empty file; otherwise the one-line reason it is not."""
    if not path.exists():
        raise CameraError(f"video file {path} {missing_reason(path)}")
    if path.is_dir():
        raise CameraError(f"{path} is a folder; pass a video file, a camera index or a stream URL")
    if path.stat().st_size == 0:
        raise CameraError(f"video file {path} is empty (0 bytes)")
    return path


# ---------------------------------------------------------------------------------------------
# Display, memory, drawing
# ---------------------------------------------------------------------------------------------


def has_display() -> bool:
    """Whether a window can be shown: on Linux/BSD a ``DISPLAY`` or ``WAYLAND_DISPLAY``."""
    if sys.platform.startswith(("linux", "freebsd", "openbsd", "netbsd")):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


def opencv_has_gui() -> bool:
    """Whether this OpenCV was built with a GUI backend (opencv-python-headless is not)."""
    for line in cv2.getBuildInformation().splitlines():
        key, _, value = line.strip().partition(":")
        if key.strip() == "GUI":
            return value.strip().upper() not in ("NONE", "NO", "")
    return True  # unknown layout: let imshow decide


def choose_display(display: bool | None) -> tuple[bool, str]:
    """(show a window?, why not when headless) for ``display`` True / False / None (auto)."""
    if display is False:
        return False, "display turned off"
    if not has_display():
        if display:
            raise CameraError(
                "a window was asked for but there is no display (DISPLAY and WAYLAND_DISPLAY "
                "are unset); run headless or record the output to a file"
            )
        return False, "no display: DISPLAY and WAYLAND_DISPLAY are unset"
    if not opencv_has_gui():
        if display:
            raise CameraError(
                "a window was asked for but OpenCV has no GUI support (opencv-python-headless); "
                "install opencv-python instead, or run headless"
            )
        return False, "OpenCV has no GUI support: opencv-python-headless is installed"
    return True, ""


def rss_mb() -> float | None:
    """Resident memory of this process in MiB (Linux ``/proc/self/statm``; None elsewhere)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError, AttributeError):
        return None


def compose_frame(
    frame_bgr: np.ndarray,
    depth: np.ndarray,
    fps: float | None,
    infer_ms: float,
    depth_range: tuple[float, float] = (MIN_DEPTH, MAX_DEPTH),
) -> np.ndarray:
    """The frame with the jet depth map over ``depth_range`` metres beside it, scaled to the
    frame's height, and the FPS, inference latency and colour range written on a dark band."""
    height = frame_bgr.shape[0]
    dh, dw = depth.shape
    panel_w = max(1, round(dw * height / dh))
    panel = cv2.cvtColor(colorize(depth, *depth_range), cv2.COLOR_RGB2BGR)
    panel = cv2.resize(panel, (panel_w, height), interpolation=cv2.INTER_LINEAR)
    out = np.concatenate([frame_bgr, panel], axis=1)
    lo, hi = depth_range
    speed = f"{fps:.1f} FPS  " if fps else ""
    text = f"{speed}{infer_ms:.1f} ms   depth {lo:.1f}-{hi:.1f} m (blue-red)"
    scale = max(0.4, height / 480 * 0.7)
    thick = max(1, round(scale * 1.5))
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    band = th + base + 8
    out[:band, : min(out.shape[1], tw + 10)] //= 3  # darken behind the text
    org = (5, 4 + th)
    cv2.putText(
        out, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thick, cv2.LINE_AA
    )
    return out


def smoothed_range(
    depth: np.ndarray, previous: tuple[float, float] | None, weight: float = 0.1
) -> tuple[float, float]:
    """The colour range of a live view: the 2nd-98th percentile of this frame's depth, blended
    into the previous range (so colours mean the same distance from frame to frame)."""
    lo, hi = (float(v) for v in np.percentile(depth, [2.0, 98.0]))
    hi = max(hi, lo + 0.1)
    if previous is None:
        return lo, hi
    return (
        (1 - weight) * previous[0] + weight * lo,
        (1 - weight) * previous[1] + weight * hi,
    )


def _as_bgr(frame: np.ndarray) -> np.ndarray:
    """A captured frame as BGR uint8 HxWx3 (grayscale and BGRA cameras exist)."""
    if frame.ndim == 2:
        return cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    if frame.shape[2] == 4:
        return cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR)
    return frame


# ---------------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------------


def read_frame(cap: Capture) -> tuple[np.ndarray | None, str]:
    """The next frame (None at the end of the stream) and, when OpenCV raised, why."""
    try:
        ok, frame = cap.read()
    except cv2.error as exc:
        return None, f" ({error_line(exc)})"
    return (frame if ok else None), ""


class NewestFrame:
    """A capture read on its own thread that keeps only the newest frame: a model slower than
    the camera shows live frames (the ones it skips are counted in ``dropped``) instead of
    working through a growing queue of old ones."""

    def __init__(self, cap: Capture) -> None:
        self.cap = cap
        self.dropped = 0
        self._frame: np.ndarray | None = None
        self._end: str | None = None  # set when the stream ends: why ("" = plain end)
        self._stop = False
        self._ready = threading.Condition()
        self._thread = threading.Thread(target=self._loop, name="camera-capture", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop:
            try:
                frame, why = read_frame(self.cap)
            except Exception as exc:  # the reader thread must end the stream, never hang it
                frame, why = None, f" ({error_line(exc)})"
            with self._ready:
                if frame is None:
                    self._end = why
                elif self._frame is not None:
                    self.dropped += 1
                if frame is not None:
                    self._frame = frame
                self._ready.notify_all()
            if frame is None:
                return

    def read(self) -> tuple[np.ndarray | None, str]:
        """The newest frame not yet taken (waiting for one), or None and why at the end."""
        with self._ready:
            self._ready.wait_for(lambda: self._frame is not None or self._end is not None)
            frame, self._frame = self._frame, None
            return frame, ("" if frame is not None else self._end or "")

    def release(self) -> None:
        """Stop the thread (after the read in progress), then release the capture."""
        self._stop = True
        self._thread.join(timeout=5.0)
        self.cap.release()


def preprocess_frame(bgr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A BGR frame as the network's input at ``size`` (the one preprocessing of inference)."""
    return rgb_to_input(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), size)


def infer_frame(runner: Any, x: np.ndarray, n: int, source: str) -> np.ndarray:
    """The depth map (H x W metres) of frame ``n``; a failing or misshapen runner is one error
    naming the frame."""
    try:
        depth = np.asarray(runner(x), dtype=np.float32)
    except Exception as exc:  # ours keep their message, others get their type
        raise DenseDepthError(
            f"inference failed on frame {n} of {source}: {error_line(exc)}"
        ) from exc
    if depth.ndim < 2 or depth.size != depth.shape[-2] * depth.shape[-1]:
        raise DenseDepthError(
            f"{runner.name} returned depth of shape {depth.shape} on frame {n}; "
            f"expected one map (1,1,H,W)"
        )
    return depth.reshape(depth.shape[-2:])


class Display:
    """The window (when shown): ``show`` returns True once the user closed it ('q', Esc or the
    window's close button); the first failing ``imshow`` falls back to headless."""

    def __init__(self, show: bool, headless_reason: str, window: str) -> None:
        self.on, self.reason, self.window = show, headless_reason, window
        self.opened = False

    def show(self, frame: np.ndarray) -> bool:
        if not self.on:
            return False
        try:
            cv2.imshow(self.window, frame)
            self.opened = True
            key = cv2.waitKey(1) & 0xFF
        except cv2.error as exc:
            self.on, self.opened = False, False
            self.reason = f"imshow failed: {error_line(exc)}"
            return False
        return key in (ord("q"), ord("Q"), _ESC) or _window_closed(self.window)

    def close(self) -> None:
        if self.opened:
            _destroy_window(self.window)


class StageClock:
    """Per-frame stage times (float32 milliseconds, 16 bytes a frame: the bookkeeping must not
    look like a leak), the smoothed frame rate and the memory samples."""

    def __init__(self, warmup: int, rss_every: int, fps_window: float = 60.0) -> None:
        self.warmup, self.rss_every, self.fps_window = warmup, rss_every, fps_window
        self.times = {stage: array("f") for stage in STAGES}
        self.ends = array("d")  # each frame's end (perf_counter s): first-minute vs sustained
        self.frames = 0
        self.first_start = self.kept_start = self.prev_start = 0.0
        self.t_start = self.t_end = time.perf_counter()
        self.fps: float | None = None  # exponential moving average, for the overlay
        self.samples: list[list[float]] = []
        self.sample_memory()

    def sample_memory(self) -> None:
        mb = rss_mb()
        if mb is not None and (not self.samples or self.samples[-1][0] != self.frames):
            self.samples.append([self.frames, round(mb, 2)])

    def tick(self, t0: float) -> float | None:
        """Update the smoothed FPS with a frame starting at ``t0``; returns it."""
        if self.frames:
            period = t0 - self.prev_start
            now = 1.0 / period if period > 0 else 0.0
            self.fps = now if self.fps is None else 0.9 * self.fps + 0.1 * now
        return self.fps

    def record(self, marks: tuple[float, float, float, float, float]) -> None:
        """One frame's stage boundaries: capture, preprocess, inference, display."""
        for stage, a, b in zip(STAGES, marks, marks[1:], strict=False):
            self.times[stage].append((b - a) * 1e3)
        if self.frames == 0:
            self.first_start = marks[0]
        if self.frames == self.warmup:
            self.kept_start = marks[0]
        self.prev_start, self.t_end = marks[0], marks[-1]
        self.ends.append(marks[-1])
        self.frames += 1
        if self.rss_every and self.frames % self.rss_every == 0:
            self.sample_memory()

    def summary(self) -> dict[str, Any]:
        """frames, warm-up, seconds, steady FPS, per-stage statistics, memory."""
        n, warmup = self.frames, self.warmup
        self.sample_memory()
        since = self.kept_start if n > warmup else self.first_start
        return {
            "frames": n,
            "warmup": warmup if n > warmup else 0,
            "seconds": round(self.t_end - self.t_start, 6),
            "fps": _steady_fps(n, warmup, since, self.t_end),
            **window_fps(
                np.frombuffer(self.ends, dtype=np.float64), self.first_start, self.fps_window
            ),
            "stages": {stage: _stats(self.times[stage], warmup) for stage in STAGES},
            "rss": _rss_summary(self.samples, n, warmup),
        }


def run_camera(
    runner: Any,
    source: str,
    *,
    frames: int = 0,
    duration: float = 0.0,
    record: str | os.PathLike[str] | None = None,
    display: bool | None = None,
    warmup: int = 5,
    rss_every: int = 50,
    window: str = "DenseDepth",
    capture: Capture | None = None,
    newest_frame: bool = False,
    fps_window: float = 60.0,
    depth_record: DepthRecorder | None = None,
    still_threshold: float = STILL_THRESHOLD,
) -> dict[str, Any]:
    """Run ``runner`` on every frame of ``source`` until ``frames`` frames, ``duration`` seconds
    (0 = no limit), the end of the stream, 'q'/Esc in the window or Ctrl-C.

    ``capture`` replaces ``open_source(source)`` (anything with ``read()`` and ``release()``;
    ``source`` then only labels it). ``newest_frame`` reads the capture on a thread and runs
    the newest frame each time (``NewestFrame``). ``record`` writes the composed frames to a
    video file (atomically; the source's FPS when it reports one, else 15). Returns a
    JSON-serialisable dict: runner, frames, seconds, fps, ended, display, record, per-stage
    statistics, memory, capture mode and frames dropped; FPS in the first and the last
    ``fps_window`` seconds; the energy per frame where a power sensor exists (bench.power);
    the depth's flicker on still pixels (``bench.flicker``, ``still_threshold``) and, with
    ``depth_record``, what it recorded (``bench.depth_record``).
    """
    if frames < 0 or duration < 0 or warmup < 0 or rss_every < 0:
        raise ValueError("frames, duration, warmup and rss_every must be >= 0")
    size = tuple(int(v) for v in runner.input_shape[2:])
    screen = Display(*choose_display(display), window)
    cap = capture if capture is not None else open_source(source)
    reader = NewestFrame(cap) if newest_frame else None
    writer: VideoFileWriter | None = None
    clock = StageClock(warmup, rss_every, fps_window)
    flicker = FlickerMeter(still_threshold)
    ended, shown = "", None  # shown: the colour range of the depth panel
    power = power_sampler(str(runner.device))
    sampler = None if isinstance(power, str) else power
    energy: dict[str, Any] = {"power": power} if isinstance(power, str) else {}
    if sampler is not None:
        sampler.start()
    try:
        if record is not None:
            writer = VideoFileWriter(record, fps=_source_fps(cap) or 15.0)
        try:
            while not ended:
                t0 = time.perf_counter()
                if frames and clock.frames >= frames:
                    ended = "frame limit"
                    break
                if duration and t0 - clock.t_start >= duration:
                    ended = "duration"
                    break
                frame, why = reader.read() if reader is not None else read_frame(cap)
                t1 = time.perf_counter()
                if frame is None:
                    if clock.frames == 0:
                        raise CameraError(f"{source} delivered no frames{why}")
                    ended = f"end of stream after {clock.frames} frames{why}"
                    break
                bgr = _as_bgr(frame)
                x = preprocess_frame(bgr, size)
                t2 = time.perf_counter()
                depth = infer_frame(runner, x, clock.frames, source)
                t3 = time.perf_counter()
                flicker.update(x, depth)
                if depth_record is not None:
                    depth_record.write(depth, bgr)
                shown = smoothed_range(depth, shown)
                out = compose_frame(bgr, depth, clock.tick(t0), (t3 - t2) * 1e3, shown)
                if screen.show(out):
                    ended = "window closed"
                if writer is not None:
                    writer.write(out)
                clock.record((t0, t1, t2, t3, time.perf_counter()))
        except KeyboardInterrupt:
            ended = "interrupted"
        recorded = writer.close() if writer is not None else None
    except BaseException:
        if writer is not None:
            writer.discard()
        raise
    finally:
        if sampler is not None:  # stopped whatever happened; its figures kept on success
            energy = energy_fields(sampler, clock.frames)
        (reader or cap).release()
        screen.close()
    return {
        **energy,
        "source": str(source),
        "runner": {
            "name": runner.name,
            "precision": runner.precision,
            "device": runner.device,
            "input_shape": [int(v) for v in runner.input_shape],
        },
        **clock.summary(),
        "ended": ended,
        "display": "window" if screen.on else "headless",
        "display_reason": screen.reason if not screen.on else "",
        "record": str(recorded) if recorded else None,
        "capture": "newest frame" if reader is not None else "every frame",
        "dropped": reader.dropped if reader is not None else 0,
        "flicker": flicker.result(),
        "record_depth": depth_record.close() if depth_record is not None else None,
    }


def _source_fps(cap: Any) -> float | None:
    """The source's frame rate when it reports a plausible one."""
    try:
        fps = float(cap.get(cv2.CAP_PROP_FPS))
    except Exception:
        return None
    return fps if 1.0 <= fps <= 240.0 else None


def _window_closed(window: str) -> bool:
    try:
        return cv2.getWindowProperty(window, cv2.WND_PROP_VISIBLE) < 1
    except cv2.error:
        return False


def _destroy_window(window: str) -> None:
    try:
        cv2.destroyWindow(window)
        cv2.waitKey(1)
    except cv2.error:
        pass


def _stats(times_ms: array, warmup: int) -> dict[str, float | None]:
    """Mean, percentiles and total of the frames after the warm-up (all, if no more ran)."""
    ms = np.frombuffer(times_ms, dtype=np.float32).astype(np.float64)
    if ms.size > warmup:
        ms = ms[warmup:]
    if not ms.size:
        return {k: None for k in ("mean_ms", "p50_ms", "p90_ms", "p99_ms", "total_s")}
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    return {
        "mean_ms": float(ms.mean()),
        "p50_ms": float(p50),
        "p90_ms": float(p90),
        "p99_ms": float(p99),
        "total_s": float(ms.sum() / 1e3),
    }


def window_fps(ends: np.ndarray, start: float, window: float) -> dict[str, Any]:
    """``first_window_fps``: frames finished in the first ``window`` seconds from the first
    frame's start, per second (over the run's length when shorter); ``sustained_fps``: the
    same over the last ``window`` seconds, only once the run lasted two windows (None
    before: the two would overlap), so heating and throttling show as the difference."""
    out: dict[str, Any] = {"fps_window_s": window, "first_window_fps": None,
                           "sustained_fps": None}  # fmt: skip
    if not ends.size or ends[-1] <= start:
        return out
    span = min(window, float(ends[-1] - start))
    out["first_window_fps"] = float(np.count_nonzero(ends <= start + span) / span)
    if ends[-1] - start >= 2 * window:
        out["sustained_fps"] = float(np.count_nonzero(ends > ends[-1] - window) / window)
    return out


def _steady_fps(n: int, warmup: int, since: float, t_end: float) -> float | None:
    """Frames per second after the warm-up (all frames if no more ran), from the wall time
    between the first kept frame's start (``since``) and the last frame's end."""
    kept = n - warmup if n > warmup else n
    if not kept or t_end <= since:
        return None
    return float(kept / (t_end - since))


def _rss_summary(samples: list[list[float]], n: int, warmup: int) -> dict[str, Any]:
    """Memory after warm-up (first sample at or after max(warmup, 10% of the frames)), at the
    end, the maximum, and the growth between the two in percent."""
    if not samples:
        return {
            "after_warmup_mb": None,
            "after_warmup_frame": None,
            "end_mb": None,
            "max_mb": None,
            "growth_pct": None,
            "samples": [],
        }
    threshold = max(warmup, math.ceil(0.1 * n))
    after = next((s for s in samples if s[0] >= threshold and s[0] > 0), samples[-1])
    end = samples[-1]
    growth = (end[1] - after[1]) / after[1] * 100.0 if after[1] else 0.0
    return {
        "after_warmup_mb": after[1],
        "after_warmup_frame": int(after[0]),
        "end_mb": end[1],
        "max_mb": max(s[1] for s in samples),
        "growth_pct": float(round(growth, 3)),
        "samples": [[int(f), m] for f, m in samples],
    }


# ---------------------------------------------------------------------------------------------
# Reports
# ---------------------------------------------------------------------------------------------


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def camera_table_rows(result: dict[str, Any]) -> list[list[str]]:
    """One row per stage (columns ``STAGE_COLUMNS``), then a total row of the per-frame sums."""
    rows = []
    for stage in STAGES:
        s = result["stages"][stage]
        rows.append(
            [
                stage,
                _fmt(s["mean_ms"]),
                _fmt(s["p50_ms"]),
                _fmt(s["p90_ms"]),
                _fmt(s["p99_ms"]),
                _fmt(s["total_s"], 3),
            ]
        )
    means = [result["stages"][s]["mean_ms"] for s in STAGES]
    totals = [result["stages"][s]["total_s"] for s in STAGES]
    if None not in means:
        rows.append(["all", _fmt(sum(means)), "", "", "", _fmt(sum(totals), 3)])
    return rows


def memory_line(result: dict[str, Any]) -> str:
    """e.g. ``RSS 412.3 MiB after warm-up (frame 50), 413.0 at the end, max 414.2 (+0.2%)``."""
    r = result["rss"]
    if r["end_mb"] is None:
        return "RSS not measured on this platform"
    return (
        f"RSS {r['after_warmup_mb']:.1f} MiB after warm-up (frame {r['after_warmup_frame']}), "
        f"{r['end_mb']:.1f} at the end, max {r['max_mb']:.1f} ({r['growth_pct']:+.1f}%)"
    )


def summary_line(result: dict[str, Any]) -> str:
    """e.g. ``600 frames in 41.2 s, 14.6 FPS after warm-up; ended: end of stream after ...``."""
    fps = result["fps"]
    dropped = f", {result['dropped']} older frames skipped" if result.get("dropped") else ""
    return (
        f"{result['frames']} frames in {result['seconds']:.1f} s, "
        f"{_fmt(fps, 1)} FPS after {result['warmup']} warm-up frames{dropped}; "
        f"ended: {result['ended']}"
    )


def endurance_line(result: dict[str, Any]) -> str:
    """First-window vs sustained FPS, and the energy per frame (or why there is none)."""
    window = f"{result.get('fps_window_s', 60):g} s"
    sustained = result.get("sustained_fps")
    lasting = (
        f"sustained (last {window}) {sustained:.1f} FPS"
        if sustained is not None
        else f"sustained: run at least {2 * result.get('fps_window_s', 60):g} s to measure"
    )
    first = f"first {window} {_fmt(result.get('first_window_fps'), 1)} FPS, {lasting}"
    if result.get("power_w") is None:
        return f"{first}; energy: {result.get('power') or 'not measured'}"
    throttled = ", ".join(result.get("throttling") or []) or "no throttling seen"
    return (
        f"{first}; {result['power_w']:.2f} W ({result['power']}), "
        f"{_fmt(result.get('mj_per_image'), 1)} mJ/frame, {throttled}"
    )


def flicker_line(result: dict[str, Any]) -> str:
    """e.g. ``flicker on still pixels: median 0.41%, p90 1.20% relative depth change between
    frames (83% of pixels still, 599 frame pairs)``."""
    f = result.get("flicker") or {}
    if f.get("median") is None:
        return f"flicker: no still pixels to measure ({f.get('pairs', 0)} frame pairs)"
    return (
        f"flicker on still pixels: median {100 * f['median']:.2f}%, p90 {100 * f['p90']:.2f}% "
        f"relative depth change between frames ({100 * f['still_share']:.0f}% of pixels still, "
        f"{f['pairs']} frame pairs)"
    )


def record_depth_line(result: dict[str, Any]) -> str:
    """e.g. ``depth recorded: 300 frames, 10 point clouds in DIR``."""
    r = result["record_depth"]
    return f"depth recorded: {r['frames']} frames, {r['pointclouds']} point clouds in {r['folder']}"


def write_camera_report(result: dict[str, Any], out_dir: str | os.PathLike[str]) -> list[Path]:
    """Write ``camera.json`` (the result) and ``camera.md`` (stage table, FPS, memory)."""
    out = Path(out_dir)
    r = result["runner"]
    shape = "x".join(map(str, r["input_shape"]))
    display = result["display"] + (
        f" ({result['display_reason']})" if result.get("display_reason") else ""
    )
    lines = [
        "# Camera benchmark",
        "",
        f"- source: `{result['source']}`",
        f"- runner: {r['name']} ({r['precision']}, {r['device']}, input {shape})",
        f"- display: {display}"
        + (f"; recorded to `{result['record']}`" if result["record"] else ""),
        f"- {summary_line(result)}",
        f"- {endurance_line(result)}",
        f"- {memory_line(result)}",
        f"- {flicker_line(result)}",
        *([f"- {record_depth_line(result)}"] if result.get("record_depth") else []),
        "",
        "| " + " | ".join(STAGE_COLUMNS) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(STAGE_COLUMNS) - 1)) + "|",
        *("| " + " | ".join(row) + " |" for row in camera_table_rows(result)),
        "",
    ]
    json_path, md_path = out / "camera.json", out / "camera.md"
    with atomic_path(json_path) as tmp:
        tmp.write_text(json.dumps(result, indent=2) + "\n")
    with atomic_path(md_path) as tmp:
        tmp.write_text("\n".join(lines))
    return [json_path, md_path]


def camera_bench(
    models: list[Path],
    source: str,
    out: Path,
    overwrite: bool,
    device: str = "auto",
    threads: int = 0,
    live: dict[str, Any] | None = None,
    log: Callable[[str], None] = print,
    warn: Callable[[str], None] = print,
) -> tuple[dict[str, Any], list[Path]]:
    """``bench --camera``: one model on live frames (``live``: ``run_camera``'s frames,
    duration, record, display, newest_frame), the report written into the folder ``out``;
    the result and the files written. ``--record`` replaces only a video the toolkit wrote,
    and only with ``overwrite``."""
    from densedepth.camera import plan_camera
    from engines import load_runner

    if len(models) != 1:
        raise DenseDepthError(f"--camera runs one model, got {len(models)}; pass one MODEL")
    require_files(models)
    live = dict(live or {})
    depth_dir, cameras = live.pop("record_depth", None), live.pop("camera", {}) or {}
    every = int(cameras.get("pointcloud_every", 0))
    if depth_dir is not None and not (live.get("frames") or live.get("duration")):
        raise DenseDepthError("--record-depth writes a file per frame: bound the run with "
                              "--frames N or --duration S")  # fmt: skip
    if every and depth_dir is None:
        raise DenseDepthError("--pointcloud on --camera writes into --record-depth DIR: pass it")
    with replacing(overwrite):
        if live.get("record") is not None:
            claim_output(Path(live["record"]))
        runner = load_runner(models[0], device=device, threads=threads)
        plan = plan_camera(runner.info.camera, cameras.get("intrinsics"),
                           cameras.get("focal_scale", "none"), need=every > 0)  # fmt: skip
        folder = OutputFolder(out, overwrite, "bench --camera", models)
        depth_folder = OutputFolder(Path(depth_dir), overwrite, "bench --record-depth", models) \
            if depth_dir is not None else None  # fmt: skip
        with folder as path, depth_folder or contextlib.nullcontext() as depth_path:
            if folder.note:
                warn(f"note: {folder.note}")
            log(f"{runner.name} on {source} (q or Esc in the window, Ctrl-C here, stop)")
            if live.get("newest_frame") is None:
                live["newest_frame"] = is_live_source(source)
            if depth_path is not None:
                live["depth_record"] = DepthRecorder(
                    Path(depth_path), plan, runner.info.depth_range, every,
                    int(cameras.get("pointcloud_stride", 1)),
                )  # fmt: skip
            result = run_camera(runner, source, **live)
            files = write_camera_report(result, path)
    return result, files
