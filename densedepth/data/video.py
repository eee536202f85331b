"""Video files: an atomic video writer and a synthetic video of a camera panning around a room.

``write_synthetic_video`` is the toolkit's own test footage for the camera/video loop: a scene
from ``densedepth.data.synthetic`` seen by a camera whose yaw sweeps smoothly back and forth (and
whose pitch bobs a little), so consecutive frames are coherent like a hand-held camera's; or
(``motion="object"``) a still camera and a box sliding across the view, the clip the flicker
score (``bench.flicker``) is measured on: everything but the box is still. The
motion is periodic with ``cycle`` frames; a longer video repeats the first ``cycle`` rendered
frames (held in memory: ``cycle * height * width * 3`` bytes) instead of re-rendering them, which
is seamless because the motion has exactly that period.

Videos are written atomically: OpenCV picks the container from the file name's suffix, so the
frames go to a hidden temporary name in the same folder that ends in the real suffix
(``.NAME.<random>.partial.mp4``), which replaces ``NAME.mp4`` only once the writer is closed.
"""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path
from types import TracebackType

import cv2
import numpy as np

from densedepth.data.synthetic import Box, Camera, Material, render, sample_scene
from densedepth.util.errors import OutputError
from densedepth.util.outputs import claim_output, record_written, temp_file_beside


class VideoFileWriter:
    """Write BGR uint8 frames to a video file atomically (``cv2.VideoWriter`` underneath).

    The writer opens at construction when ``size`` = (width, height) is given, otherwise at the
    first frame (whose size it then requires of every frame). ``close()`` moves the finished file
    into place and returns its path (None when no writer was ever opened); ``discard()`` removes
    the temporary file. As a context manager it closes on success and discards on an exception.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        fps: float = 15.0,
        size: tuple[int, int] | None = None,
        fourcc: str = "mp4v",
    ) -> None:
        if not fps > 0:
            raise ValueError(f"fps must be positive, got {fps}")
        self.path, self.fps, self.fourcc = Path(path), float(fps), fourcc
        claim_output(self.path)  # never replaces a video the toolkit did not write
        self.size: tuple[int, int] | None = None
        self.frames = 0
        self._writer: cv2.VideoWriter | None = None
        self._tmp: str | None = None
        if size is not None:
            self._open((int(size[0]), int(size[1])))

    def _open(self, size: tuple[int, int]) -> None:
        path = self.path
        try:
            fd, tmp = temp_file_beside(path, suffix=f".partial{path.suffix}")
            os.close(fd)
        except OSError as exc:
            raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
        writer = cv2.VideoWriter(tmp, cv2.VideoWriter_fourcc(*self.fourcc), self.fps, size)
        if not writer.isOpened():
            writer.release()
            os.unlink(tmp)
            raise OutputError(
                f"cannot write video {path}: OpenCV could not open a {self.fourcc!r} writer for "
                f"{path.suffix or 'suffix-less'} files; name it .mp4 or .avi"
            )
        self._writer, self._tmp, self.size = writer, tmp, size

    def write(self, frame: np.ndarray) -> None:
        """Append one BGR uint8 HxWx3 frame (every frame must have the first one's size)."""
        if frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"{self.path}: frame is {frame.shape}; expected HxWx3 (BGR)")
        height, width = frame.shape[:2]
        if self._writer is None:
            if self._tmp is not None:
                raise ValueError(f"{self.path}: writer is already closed")
            self._open((width, height))
        if (width, height) != self.size:
            raise ValueError(f"{self.path}: frame is {width}x{height}; the video is {self.size}")
        assert self._writer is not None
        self._writer.write(np.ascontiguousarray(frame, dtype=np.uint8))
        self.frames += 1

    def close(self) -> Path | None:
        """Finish the file and move it into place; the path, or None if nothing was opened."""
        if self._writer is None:
            return None
        self._writer.release()
        self._writer = None
        tmp = self._tmp
        assert tmp is not None
        try:
            os.replace(tmp, self.path)
        except OSError as exc:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise OutputError(f"cannot write {self.path}: {exc.strerror or exc}") from None
        record_written(self.path)
        return self.path

    def discard(self) -> None:
        """Drop the unfinished file (nothing is left behind)."""
        if self._writer is not None:
            self._writer.release()
            self._writer = None
        if self._tmp is not None and os.path.exists(self._tmp):
            os.unlink(self._tmp)

    def __enter__(self) -> VideoFileWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.discard()


def pan_yaw(frame: int, cycle: int, pan_deg: float) -> float:
    """Yaw offset (radians) of ``frame``: a sine sweep of +-``pan_deg`` with period ``cycle``."""
    return math.radians(pan_deg) * math.sin(2.0 * math.pi * frame / cycle)


MOTIONS = ("pan", "object")


def synthetic_frames(
    frames: int,
    height: int = 64,
    width: int = 96,
    seed: int = 0,
    cycle: int = 240,
    pan_deg: float = 20.0,
    motion: str = "pan",
) -> list[np.ndarray]:
    """The first ``min(frames, cycle)`` frames (RGB uint8) of a synthetic video: ``pan``, the
    camera panning around the room, or ``object``, a still camera watching a box slide across
    its view 1.5 m away and back (the rest of the image still but for sensor noise)."""
    if cycle < 1:
        raise ValueError(f"cycle must be at least 1 frame, got {cycle}")
    if motion not in MOTIONS:
        raise ValueError(f"motion must be one of {', '.join(MOTIONS)}, got {motion!r}")
    scene = sample_scene(seed)
    rng = np.random.default_rng(seed)  # sensor noise
    cam, boxes = scene.camera, list(scene.boxes)
    out = []
    for i in range(min(frames, cycle)):
        if motion == "pan":
            bob = math.radians(2.0) * math.sin(4.0 * math.pi * i / cycle)
            scene.camera = dataclasses.replace(
                cam, yaw=cam.yaw + pan_yaw(i, cycle, pan_deg), pitch=cam.pitch + bob
            )
        else:
            scene.boxes = [*boxes, sliding_box(cam, scene.floor, i, cycle)]
        rgb, _ = render(scene, height, width, rng)
        out.append(rgb)
    scene.camera, scene.boxes = cam, boxes
    return out


def sliding_box(cam: Camera, material: Material, frame: int, cycle: int) -> Box:
    """A 0.3 m box 1.5 m in front of ``cam``, slid along its right axis by +-0.6 m (a sine of
    period ``cycle``) at frame ``frame``."""
    rot = cam.rotation()
    centre = np.asarray(cam.position) + 1.5 * rot[:, 2] + 0.6 * math.sin(
        2.0 * math.pi * frame / cycle) * rot[:, 0]  # fmt: skip
    half = 0.15
    return Box(tuple(centre - half), tuple(centre + half), material, kind="moving-box")


def write_synthetic_video(
    path: str | os.PathLike[str],
    frames: int,
    height: int = 64,
    width: int = 96,
    fps: float = 15.0,
    seed: int = 0,
    cycle: int = 240,
    pan_deg: float = 20.0,
    fourcc: str = "mp4v",
    motion: str = "pan",
) -> Path:
    """Write ``frames`` frames of a camera panning +-``pan_deg`` around synthetic room ``seed``
    (``motion="object"``: a still camera watching a box slide by, ``synthetic_frames``).

    Frames ``cycle`` and later repeat frames ``0..cycle-1`` (the motion's period, so the loop is
    seamless). ``frames=0`` writes a valid container holding no frames (readers reject it).
    """
    if frames < 0:
        raise ValueError(f"number of frames must be >= 0, got {frames}")
    rendered = synthetic_frames(frames, height, width, seed, cycle, pan_deg, motion)
    bgr = [cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR) for rgb in rendered]
    with VideoFileWriter(path, fps, size=(width, height), fourcc=fourcc) as writer:
        for i in range(frames):
            writer.write(bgr[i % len(bgr)])
    return Path(path)
