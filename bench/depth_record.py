"""``bench --camera --record-depth DIR``: the live run's depth as files a robot stack can read.

Every frame's depth goes to ``DIR/frame_NNNNNN_depth.png`` (uint16 millimetres, at the model's
output resolution: half the network input), and with ``--pointcloud`` every ``every``-th frame
to ``DIR/frame_NNNNNN.ply`` (x y z metres in the camera frame, OpenCV axes, the frame's RGB;
clamped pixels dropped). Each file is written atomically; ``DIR/camera.json`` records the
cameras, the focal-length correction and the intrinsics at the output's size. The run must be
bounded (``--frames`` or ``--duration``) so a live camera cannot fill the disk.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from densedepth.camera import CameraPlan, ImageCamera, backproject, camera_fields, write_ply
from densedepth.data.writers import depth_to_mm16, encode_png
from densedepth.util.outputs import atomic_path, write_text_atomic


class DepthRecorder:
    """Writes each frame's depth (and every ``every``-th frame's point cloud, ``every`` 0:
    none) into ``folder`` (see the module docstring)."""

    def __init__(
        self,
        folder: Path,
        plan: CameraPlan,
        depth_range: tuple[float, float],
        every: int = 0,
        stride: int = 1,
    ) -> None:
        if every < 0 or stride < 1:
            raise ValueError("point cloud interval must be >= 0 and stride >= 1")
        self.folder, self.plan, self.range = Path(folder), plan, depth_range
        self.every, self.stride = every, stride
        self.frames = 0
        self.clouds = 0
        self.camera: ImageCamera | None = None
        self.text: dict[str, str] = {}

    def write(self, depth: np.ndarray, bgr: np.ndarray) -> np.ndarray:
        """Record one frame's depth (metres, any shape ending in h, w) seen in ``bgr``
        (the camera's frame, any size); returns the depth after the focal correction."""
        d = np.asarray(depth, np.float32).reshape(np.shape(depth)[-2:])
        h, w = d.shape
        if self.camera is None:
            self.camera = self.plan.for_frame(bgr.shape[1], bgr.shape[0], w, h)
            self.text = camera_fields(self.plan, self.camera)
        lo, hi = self.range
        measured = (d > lo) & (d < hi)
        d = d * np.float32(self.camera.applied)
        name = f"frame_{self.frames:06d}"
        with atomic_path(self.folder / f"{name}_depth.png") as tmp:
            tmp.write_bytes(encode_png(depth_to_mm16(d), self.text))
        if self.every and self.frames % self.every == 0:
            assert self.camera.intrinsics is not None
            rgb = cv2.resize(bgr, (w, h), interpolation=cv2.INTER_AREA)[..., ::-1]
            points, colours = backproject(d, self.camera.intrinsics, rgb, self.stride, measured)
            comments = [f"{k} {v}" for k, v in self.text.items()]
            write_ply(self.folder / f"{name}.ply", points, colours, comments)
            self.clouds += 1
        self.frames += 1
        return d

    def close(self) -> dict[str, Any]:
        """Write ``camera.json``; what was recorded (folder, frames, point clouds, camera)."""
        summary = {
            "folder": str(self.folder),
            "frames": self.frames,
            "pointclouds": self.clouds,
            "pointcloud_every": self.every,
            "pointcloud_stride": self.stride,
            **self.plan.record(),
            "output": self.camera.record() if self.camera is not None else None,
        }
        write_text_atomic(self.folder / "camera.json", json.dumps(summary, indent=2) + "\n")
        return summary
