"""Camera/video loop: synthetic video files, the stage timings, stopping rules, bad sources.

Truncated files, as OpenCV really behaves: an MP4 from ``cv2.VideoWriter`` keeps its index
(``moov``) at the end, so cutting it makes it unopenable (a clear ``CameraError``); the same
video with the index moved to the front ("faststart", as streaming MP4s are) plays up to the
cut and the run ends cleanly. A camera unplugged mid-run is a capture whose ``read()`` starts
failing, injected through ``capture=``.
"""

from __future__ import annotations

import json
import os
import struct
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from bench.camera import (
    CameraError,
    endurance_line,
    is_live_source,
    open_source,
    run_camera,
    summary_line,
    window_fps,
    write_camera_report,
)
from densedepth.data.video import VideoFileWriter, write_synthetic_video
from densedepth.util.errors import DenseDepthError, OutputError
from densedepth.util.outputs import LEDGER

H, W = 64, 96


class FrameRunner:
    """Depth derived from the frame (0.5-9.5 m from the red channel), optionally slow or failing."""

    name, precision, device = "frame", "fp32", "cpu"

    def __init__(
        self,
        input_size: tuple[int, int] = (H, W),
        seconds: float = 0.0,
        fail_on: int | None = None,
        exc: BaseException | None = None,
    ) -> None:
        self.input_shape = (1, 3, *input_size)
        self.seconds, self.fail_on, self.exc, self.calls = seconds, fail_on, exc, 0

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        assert batch.dtype == np.float32 and batch.shape == self.input_shape
        self.calls += 1
        if self.fail_on is not None and self.calls - 1 == self.fail_on:
            raise self.exc or RuntimeError("CUDA error: an illegal memory access\nsecond line")
        if self.seconds:
            time.sleep(self.seconds)
        return 0.5 + 9.0 * batch[:, :1, ::2, ::2]


class FakeCapture:
    """A camera that delivers ``frames`` frames, then fails like an unplugged device."""

    def __init__(self, frames: int, live: int | None = None) -> None:
        self.frames = frames
        self.live = frames if live is None else live
        self.reads, self.released = 0, False

    def read(self) -> tuple[bool, np.ndarray | None]:
        self.reads += 1
        if self.reads > self.live:
            return False, None
        img = np.zeros((H, W, 3), np.uint8)
        img[:, (self.reads * 5) % W] = 255
        return True, img

    def release(self) -> None:
        self.released = True


def read_all(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    assert cap.isOpened()
    out = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        out.append(frame)
    cap.release()
    return out


def mad(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def _atoms(buf: bytes | bytearray, start: int, end: int):
    while start < end:
        size, kind = struct.unpack(">I4s", buf[start : start + 8])
        assert size >= 8, "unexpected 64-bit or open-ended atom"
        yield kind, start, size
        start += size


def faststart(data: bytes) -> bytes:
    """The MP4 with its ``moov`` index moved before ``mdat`` (chunk offsets shifted)."""
    top = list(_atoms(data, 0, len(data)))
    (_, m_off, m_size) = next(a for a in top if a[0] == b"moov")
    moov = bytearray(data[m_off : m_off + m_size])

    def patch(start: int, end: int) -> None:
        for kind, off, size in _atoms(moov, start, end):
            if kind in (b"trak", b"mdia", b"minf", b"stbl"):
                patch(off + 8, off + size)
            elif kind == b"stco":
                (count,) = struct.unpack(">I", moov[off + 12 : off + 16])
                for k in range(count):
                    p = off + 16 + 4 * k
                    (value,) = struct.unpack(">I", moov[p : p + 4])
                    moov[p : p + 4] = struct.pack(">I", value + m_size)
            assert kind != b"co64"

    patch(8, m_size)
    head = b"".join(data[o : o + s] for k, o, s in top if k == b"ftyp")
    rest = b"".join(data[o : o + s] for k, o, s in top if k not in (b"ftyp", b"moov"))
    return head + bytes(moov) + rest


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_video(tmp_path_factory.mktemp("video") / "pan.mp4", 24, H, W)


@pytest.fixture(autouse=True)
def _no_display(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)


# ---------------------------------------------------------------------------------------------
# Synthetic video
# ---------------------------------------------------------------------------------------------


def test_synthetic_video_round_trips_and_camera_moves(video: Path) -> None:
    frames = read_all(video)
    assert len(frames) == 24
    assert all(f.shape == (H, W, 3) and f.dtype == np.uint8 for f in frames)
    near = np.mean([mad(frames[i], frames[i + 1]) for i in range(len(frames) - 1)])
    far = mad(frames[0], frames[-1])
    assert far > 10.0 and far > 2.0 * near  # the camera pans: coherent steps, growing change
    # no temp file left; the ledger says the video is the toolkit's to replace
    assert sorted(os.listdir(video.parent)) == [LEDGER, "pan.mp4"]
    assert os.stat(video).st_mode & 0o777 == 0o666 & ~_umask()


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def test_synthetic_video_repeats_its_cycle(tmp_path: Path) -> None:
    frames = read_all(write_synthetic_video(tmp_path / "loop.mp4", 9, 32, 48, cycle=4))
    assert len(frames) == 9
    for k in range(5):  # frame k+4 repeats frame k (up to compression); k+1 is 20 deg away
        assert mad(frames[k], frames[k + 4]) < 0.25 * mad(frames[k], frames[k + 1])


def test_video_writer_refuses_unknown_suffix_and_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match=r"cannot write video .*out\.xyz.*\.mp4 or \.avi"):
        write_synthetic_video(tmp_path / "out.xyz", 2, 32, 48)
    assert os.listdir(tmp_path) == []


def test_video_writer_discards_on_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="the video is"), VideoFileWriter(tmp_path / "a.mp4") as w:
        w.write(np.zeros((32, 48, 3), np.uint8))
        w.write(np.zeros((16, 48, 3), np.uint8))
    assert os.listdir(tmp_path) == []


# ---------------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------------


def test_run_counts_every_frame_and_times_each_stage(video: Path) -> None:
    runner = FrameRunner()
    result = run_camera(runner, str(video), warmup=3)
    assert result["frames"] == 24 == runner.calls
    assert result["ended"] == "end of stream after 24 frames"
    assert result["display"] == "headless" and "DISPLAY" in result["display_reason"]
    assert result["record"] is None and result["warmup"] == 3
    for stage in ("capture", "preprocess", "inference", "display"):
        s = result["stages"][stage]
        assert 0 < s["p50_ms"] <= s["p90_ms"] <= s["p99_ms"]
        assert s["mean_ms"] > 0 and abs(s["total_s"] - s["mean_ms"] * 21 / 1e3) < 1e-9
    assert result["fps"] > 0 and result["seconds"] > 0
    assert result["runner"] == {
        "name": "frame",
        "precision": "fp32",
        "device": "cpu",
        "input_shape": [1, 3, H, W],
    }
    json.dumps(result)


def test_frame_limit_stops_at_n(video: Path) -> None:
    runner = FrameRunner()
    result = run_camera(runner, str(video), frames=7)
    assert result["frames"] == 7 == runner.calls and result["ended"] == "frame limit"


def test_duration_stops_early(video: Path) -> None:
    result = run_camera(FrameRunner(seconds=0.02), str(video), duration=0.15, warmup=0)
    assert result["ended"] == "duration"
    assert 2 <= result["frames"] < 24
    assert result["seconds"] >= 0.15 * 0.9


def test_record_writes_composed_frames(video: Path, tmp_path: Path) -> None:
    out = tmp_path / "rec" / "live.mp4"
    runner = FrameRunner(input_size=(32, 64))  # depth 16x32, drawn 64 high -> 128 wide
    result = run_camera(runner, str(video), record=out)
    assert result["record"] == str(out)
    frames = read_all(out)
    assert len(frames) == result["frames"] == 24
    assert frames[0].shape == (H, W + 128, 3)
    band = 24  # the darkened text band on top (FPS, latency, colour range)
    assert mad(frames[0][band:, :W], read_all(video)[0][band:]) < 12  # the frame itself, left
    assert sorted(os.listdir(out.parent)) == [LEDGER, "live.mp4"]


def test_truncated_plain_mp4_cannot_be_opened(video: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut.mp4"
    data = video.read_bytes()
    cut.write_bytes(data[: int(len(data) * 0.6)])  # the moov index at the end is gone
    with pytest.raises(CameraError, match=r"^cannot open video .*cut\.mp4: not a readable video"):
        run_camera(FrameRunner(), str(cut))


def test_truncated_streamable_mp4_ends_cleanly(video: Path, tmp_path: Path) -> None:
    fast = faststart(video.read_bytes())
    whole, cut = tmp_path / "whole.mp4", tmp_path / "cut.mp4"
    whole.write_bytes(fast)
    assert len(read_all(whole)) == 24  # the rewrite itself is sound
    cut.write_bytes(fast[: int(len(fast) * 0.6)])
    result = run_camera(FrameRunner(), str(cut))
    assert 0 < result["frames"] < 24
    assert result["ended"] == f"end of stream after {result['frames']} frames"


def test_camera_that_disappears_ends_cleanly_and_is_released(tmp_path: Path) -> None:
    cap = FakeCapture(100, live=9)
    result = run_camera(FrameRunner(), "0", capture=cap, record=tmp_path / "r.mp4")
    assert result["frames"] == 9 and result["ended"] == "end of stream after 9 frames"
    assert cap.released and len(read_all(tmp_path / "r.mp4")) == 9


def test_keyboard_interrupt_ends_cleanly(tmp_path: Path) -> None:
    cap = FakeCapture(100)
    runner = FrameRunner(fail_on=4, exc=KeyboardInterrupt())
    result = run_camera(runner, "0", capture=cap, record=tmp_path / "r.mp4", warmup=1)
    assert result["ended"] == "interrupted" and result["frames"] == 4 and cap.released
    assert len(read_all(tmp_path / "r.mp4")) == 4
    assert result["stages"]["inference"]["mean_ms"] is not None


def test_runner_failure_names_the_frame_and_releases_everything(tmp_path: Path) -> None:
    cap = FakeCapture(100)
    with pytest.raises(DenseDepthError) as info:
        run_camera(FrameRunner(fail_on=5), "cam0", capture=cap, record=tmp_path / "r.mp4")
    msg = str(info.value)
    assert (
        msg
        == "inference failed on frame 5 of cam0: RuntimeError: CUDA error: an illegal memory access"
    )
    assert not isinstance(info.value, CameraError)
    assert cap.released and os.listdir(tmp_path) == []  # partial recording removed


@pytest.mark.parametrize(
    ("make", "pattern"),
    [
        (lambda d: "97", r"^cannot open camera index 97: no such device.*v4l2-ctl"),
        (lambda d: str(d / "missing.mp4"), r"^video file .*missing\.mp4 does not exist$"),
        (lambda d: _write(d / "junk.mp4", os.urandom(4096)), r"^cannot open video .*junk\.mp4"),
        (lambda d: _write(d / "empty.mp4", b""), r"^video file .*empty\.mp4 is empty"),
        (
            lambda d: str(write_synthetic_video(d / "none.mp4", 0, 32, 48)),
            r"^cannot open video .*none\.mp4",  # an mp4v MP4 without frames does not open
        ),
        (
            lambda d: str(write_synthetic_video(d / "none.avi", 0, 32, 48, fourcc="MJPG")),
            r"^.*none\.avi delivered no frames$",  # an AVI without frames opens, reads nothing
        ),
        (lambda d: str(d), r"is a folder"),
        (lambda d: "http://127.0.0.1:9/live.mp4", r"^cannot open stream http://127\.0\.0\.1:9"),
        (lambda d: "videotestsrc ! nosuchelement ! appsink", r"^cannot open the GStreamer"),
    ],
    ids=[
        "device",
        "missing",
        "garbage",
        "empty",
        "zero-frame-mp4",
        "zero-frame-avi",
        "folder",
        "url",
        "gstreamer",
    ],
)
def test_bad_sources_raise_one_line_camera_errors(make, pattern: str, tmp_path: Path) -> None:
    source = make(tmp_path)
    with pytest.raises(CameraError, match=pattern) as info:
        run_camera(FrameRunner(), source)
    assert "\n" not in str(info.value)


def _write(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


def test_open_source_treats_digits_as_device_and_paths_as_files(video: Path) -> None:
    cap = open_source(str(video))
    try:
        assert cap.isOpened()
    finally:
        cap.release()
    with pytest.raises(CameraError, match="camera index 96"):
        open_source(" 96 ")


# ---------------------------------------------------------------------------------------------
# Display
# ---------------------------------------------------------------------------------------------


def test_explicit_window_without_display_is_an_error() -> None:
    cap = FakeCapture(3)
    with pytest.raises(CameraError, match="no display"):
        run_camera(FrameRunner(), "0", capture=cap, display=True)


def test_auto_display_falls_back_when_imshow_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISPLAY", ":99")
    monkeypatch.setattr("bench.camera.opencv_has_gui", lambda: True)
    calls = []

    def imshow(*args):
        calls.append(args)
        raise cv2.error("The function is not implemented")

    monkeypatch.setattr(cv2, "imshow", imshow)
    result = run_camera(FrameRunner(), "0", capture=FakeCapture(6, live=6))
    assert len(calls) == 1  # tried once, then headless
    assert result["frames"] == 6 and result["display"] == "headless"
    assert result["display_reason"].startswith("imshow failed")


def test_headless_opencv_build_is_detected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISPLAY", ":99")
    monkeypatch.setattr("bench.camera.opencv_has_gui", lambda: False)
    result = run_camera(FrameRunner(), "0", capture=FakeCapture(3, live=3))
    assert result["display"] == "headless" and "GUI" in result["display_reason"]


def test_q_in_the_window_stops(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISPLAY", ":99")
    monkeypatch.setattr("bench.camera.opencv_has_gui", lambda: True)
    shown, destroyed = [], []
    monkeypatch.setattr(cv2, "imshow", lambda name, img: shown.append(img.shape))
    monkeypatch.setattr(cv2, "waitKey", lambda ms: ord("q") if len(shown) == 3 else -1)
    monkeypatch.setattr(cv2, "getWindowProperty", lambda name, prop: 1.0)
    monkeypatch.setattr(cv2, "destroyWindow", destroyed.append)
    result = run_camera(FrameRunner(), "0", capture=FakeCapture(50), window="DD")
    assert result["frames"] == 3 and result["ended"] == "window closed"
    assert result["display"] == "window" and destroyed == ["DD"]
    assert shown[0] == (H, 2 * W, 3)


# ---------------------------------------------------------------------------------------------
# Memory, report, a real model
# ---------------------------------------------------------------------------------------------


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RSS is read from /proc")
def test_rss_is_sampled(video: Path) -> None:
    rss = run_camera(FrameRunner(), str(video), rss_every=4, warmup=2)["rss"]
    frames = [f for f, _ in rss["samples"]]
    assert frames == [0, 4, 8, 12, 16, 20, 24]
    assert rss["after_warmup_frame"] == 4  # first sample at or after max(2, 10% of 24)
    assert rss["end_mb"] == rss["samples"][-1][1] and rss["max_mb"] >= rss["end_mb"] > 10
    assert isinstance(rss["growth_pct"], float)


def test_report_files(video: Path, tmp_path: Path) -> None:
    result = run_camera(FrameRunner(), str(video), frames=10)
    paths = write_camera_report(result, tmp_path / "out")
    assert [p.name for p in paths] == ["camera.json", "camera.md"]
    assert json.loads(paths[0].read_text()) == json.loads(json.dumps(result))
    md = paths[1].read_text()
    assert "| stage | mean ms |" in md and "| inference |" in md and "RSS" in md
    assert "10 frames" in md and "frame limit" in md
    assert sorted(os.listdir(tmp_path / "out")) == ["camera.json", "camera.md"]


def test_real_tiny_model_on_video(video: Path, tmp_path: Path) -> None:
    import torch

    from densedepth.model import DenseDepth
    from engines.torch_runner import TorchRunner

    torch.manual_seed(0)
    runner = TorchRunner(DenseDepth("densenet121", decoder_width=0.125), "cpu", (H, W))
    out = tmp_path / "live.mp4"
    result = run_camera(runner, str(video), frames=4, warmup=1, record=out)
    assert result["frames"] == 4 and result["runner"]["name"] == "torch:densenet121"
    assert result["stages"]["inference"]["mean_ms"] > 0
    assert [f.shape for f in read_all(out)] == [(H, 2 * W, 3)] * 4


def test_cli_bench_camera_on_a_generated_video(trained_tiny: dict, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from cli import app

    video = write_synthetic_video(tmp_path / "walk.mp4", 12, 64, 64)
    out, rec = tmp_path / "cam", tmp_path / "view.mp4"
    args = ["bench", "--camera", "--source", str(video), str(trained_tiny["onnx"])]
    args += ["--out", str(out), "--record", str(rec), "--threads", "1"]
    result = CliRunner().invoke(app, args, terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "12 frames" in result.output and "end of stream after 12 frames" in result.output
    for stage in ("capture", "preprocess", "inference", "display"):
        assert stage in result.output
    report = json.loads((out / "camera.json").read_text())
    assert report["frames"] == 12 and report["display"] == "headless"
    assert (out / "camera.md").is_file() and len(read_all(rec)) == 12


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--source", "97"], "cannot open camera index 97"),
        (["--source", "{tmp}/junk.mp4"], "cannot open video"),
        (["--source", "{tmp}/none.avi"], "delivered no frames"),
        (["--source", "{tmp}/walk.mp4", "{model}"], "--camera runs one model, got 2"),
        (["--source", "{tmp}/walk.mp4", "--out", "{tmp}"], "toolkit did not write"),
    ],
    ids=["bad-index", "unopenable", "zero-frames", "two-models", "existing-out"],
)
def test_cli_bench_camera_bad_input(
    trained_tiny: dict, tmp_path: Path, extra: list[str], message: str
) -> None:
    from typer.testing import CliRunner

    from cli import app

    _write(tmp_path / "junk.mp4", os.urandom(2048))
    write_synthetic_video(tmp_path / "none.avi", 0, 32, 48, fourcc="MJPG")
    write_synthetic_video(tmp_path / "walk.mp4", 3, 64, 64)
    model = str(trained_tiny["onnx"])
    args = [a.replace("{tmp}", str(tmp_path)).replace("{model}", model) for a in extra]
    out = ["--out", str(tmp_path / "o")] if "--out" not in extra else []
    result = CliRunner().invoke(app, ["bench", "--camera", model, *args, *out])
    assert result.exit_code == 1, result.output
    assert message in result.output and "Traceback" not in result.output


def test_live_colour_range_follows_the_scene_smoothly() -> None:
    from bench.camera import compose_frame, smoothed_range

    near = np.tile(np.linspace(1.0, 3.0, 10, dtype=np.float32), (10, 1))  # far to the right
    first = smoothed_range(near, None)
    assert first == pytest.approx(tuple(np.percentile(near, [2, 98])))
    far = near + 4.0
    second = smoothed_range(far, first, weight=0.25)
    assert second == pytest.approx((0.75 * first[0] + 0.25 * (first[0] + 4.0),
                                    0.75 * first[1] + 0.25 * (first[1] + 4.0)))  # fmt: skip
    flat = smoothed_range(np.full((4, 4), 2.0, np.float32), None)
    assert flat[1] - flat[0] == pytest.approx(0.1)  # a flat map still gets a valid range
    frame = np.full((40, 60, 3), 128, np.uint8)
    out = compose_frame(frame, near, 12.0, 5.0, first)
    assert out.shape == (40, 60 + 40, 3)
    # the panel's left column is nearest (blue in jet), its right column farthest (red)
    left, right = out[20:, 60 + 1].astype(int).mean(0), out[20:, -2].astype(int).mean(0)
    assert left[0] > left[2] and right[2] > right[0]  # BGR


class PacedCapture(FakeCapture):
    """A camera delivering a frame every ``period`` seconds; frame k has column k lit, so a
    runner can tell which frame it got."""

    def __init__(self, frames: int, period: float) -> None:
        super().__init__(frames)
        self.period = period

    def read(self) -> tuple[bool, np.ndarray | None]:
        time.sleep(self.period)
        if self.reads >= self.frames:
            self.reads += 1
            return False, None
        self.reads += 1
        img = np.zeros((H, W, 3), np.uint8)
        img[:, self.reads - 1] = 255
        return True, img


class SeenRunner(FrameRunner):
    """Records the index of the frame it was given (the lit column)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(seconds=seconds)
        self.seen: list[int] = []

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        self.seen.append(int(np.argmax(batch[0, 0, 0])))
        return super().__call__(batch)


def test_newest_frame_runs_live_frames_and_counts_the_skipped() -> None:
    """A camera at 200 FPS and a model at ~20: with newest_frame every frame is run or counted
    as skipped, the model sees frames in order and ends on the newest; without it, every frame
    is run, in order, however late."""
    cap = PacedCapture(60, 0.005)
    runner = SeenRunner(0.05)
    result = run_camera(runner, "cam", capture=cap, newest_frame=True, warmup=0)
    assert result["capture"] == "newest frame" and cap.released
    assert result["frames"] + result["dropped"] == 60 and result["dropped"] >= 10
    assert runner.seen == sorted(runner.seen) and runner.seen[-1] == 59
    assert "older frames skipped" in summary_line(result)
    every = SeenRunner(0.0)
    result = run_camera(every, "cam", capture=PacedCapture(20, 0.0), warmup=0)
    assert result["capture"] == "every frame" and result["dropped"] == 0
    assert every.seen == list(range(20)) and result["frames"] == 20


def test_newest_frame_capture_that_raises_ends_the_stream_without_hanging() -> None:
    class Broken(FakeCapture):
        def read(self) -> tuple[bool, np.ndarray | None]:
            if self.reads >= 3:
                raise RuntimeError("USB disconnected")
            return super().read()

    cap = Broken(10)
    result = run_camera(FrameRunner(), "cam", capture=cap, newest_frame=True, warmup=0)
    assert 1 <= result["frames"] <= 3 and cap.released
    assert "USB disconnected" in result["ended"]
    with pytest.raises(CameraError, match="delivered no frames"):
        run_camera(FrameRunner(), "cam", capture=Broken(0), newest_frame=True)


def test_live_sources_take_the_newest_frame_by_default() -> None:
    assert is_live_source("0") and is_live_source("rtsp://cam/1")
    assert is_live_source("nvarguscamerasrc ! appsink")
    assert not is_live_source("walk.mp4") and not is_live_source("./0")


def test_first_window_and_sustained_fps_from_frame_ends() -> None:
    """Frames every 10 ms for 1 s, then every 20 ms for 1 s (a board that heats up), windows
    of 0.5 s: 50 frames in the first window (100 FPS), 25 in the last (50 FPS); a run shorter
    than two windows has no sustained figure."""
    ends = np.concatenate([np.arange(1, 101) * 0.010, 1.0 + np.arange(1, 51) * 0.020])
    out = window_fps(ends, 0.0, 0.5)
    assert out["first_window_fps"] == pytest.approx(100.0)
    assert out["sustained_fps"] == pytest.approx(50.0)
    short = window_fps(ends[:60], 0.0, 0.5)  # 0.6 s: under two windows
    assert short["first_window_fps"] == pytest.approx(100.0) and short["sustained_fps"] is None
    tiny = window_fps(ends[:20], 0.0, 0.5)  # 0.2 s: the first window is the run
    assert tiny["first_window_fps"] == pytest.approx(20 / 0.2)
    assert window_fps(np.array([]), 0.0, 0.5)["first_window_fps"] is None


def test_camera_run_reports_windows_and_says_why_energy_is_missing() -> None:
    cap = FakeCapture(400)
    result = run_camera(FrameRunner(seconds=0.005), "0", capture=cap, duration=0.5,
                        fps_window=0.2, warmup=0)  # fmt: skip
    assert result["first_window_fps"] > 0 and result["sustained_fps"] > 0
    # every frame takes at least the runner's 5 ms: neither window can beat 200 FPS
    assert max(result["first_window_fps"], result["sustained_fps"]) <= 1 / 0.005
    line = endurance_line(result)
    assert line.startswith("first 0.2 s ") and "sustained (last 0.2 s)" in line
    if "power_w" not in result:  # this machine has no sensor (the bench tests fake one)
        assert result["power"].startswith("no power sensor") and "energy: no power" in line
    json.dumps(result)
