"""Synthetic KITTI-like street scenes: a car's camera driving down a street.

A scene (a "drive") is a street between two rows of building facades: the road (dark, with
lane marks), kerbs and sidewalks, parked and moving cars as boxes, poles, and the sky (no
depth) above the buildings and beyond the street's end. Frames move the camera forward along
the street. The camera is KITTI's left colour camera (``image_02``: fx = fy = 721.5377,
principal point 609.56, 172.85 at 1242 x 375, scaled to the requested size), 1.65 m above the
road. Ray casting is ``densedepth.data.synthetic.cast_rays``; depth is z-depth along the optical
axis, as KITTI's projected lidar depth is.

``lidar_ground_truth`` thins a dense depth map the way KITTI's annotated ground truth looks:
points along the scan lines of a 64-beam lidar (elevations -24.9..+2 degrees, seen from the
camera), 0 elsewhere, none in the sky, some returns dropped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from densedepth.camera import KITTI_P_RECT_02
from densedepth.data.synthetic import Box, Camera, Intrinsics, cast_rays

KITTI_SIZE = (375, 1242)  # height, width of the raw colour frames (2011_09_26)
KITTI_INTRINSICS = KITTI_P_RECT_02  # image_02 of 2011_09_26, at KITTI_SIZE
CAMERA_HEIGHT = 1.65  # metres above the road
STREET_END = 150.0  # metres ahead: beyond is sky (no depth)
SKY_HEIGHT = 60.0  # metres: rays leaving above the buildings are sky
LIDAR_BEAMS = (-24.9, 2.0, 64)  # lowest and highest elevation (degrees), beams
FRAME_STEP = 1.2  # metres the car moves between frames


def kitti_intrinsics(height: int, width: int) -> Intrinsics:
    """KITTI's image_02 intrinsics scaled to ``height`` x ``width``."""
    fx, fy, cx, cy = KITTI_INTRINSICS
    sx, sy = width / KITTI_SIZE[1], height / KITTI_SIZE[0]
    return fx * sx, fy * sy, (cx + 0.5) * sx - 0.5, (cy + 0.5) * sy - 0.5


@dataclass
class Street:
    """One drive's geometry and colours (drawn from its seed)."""

    left: float  # x of the left facades (negative)
    right: float  # x of the right facades
    boxes: list[Box]
    colours: dict[str, np.ndarray]  # per box kind, linear RGB
    box_colours: list[np.ndarray]
    sun: np.ndarray  # unit vector towards the sun
    yaw: float
    pitch: float


def sample_street(seed: int) -> Street:
    """The street of drive ``seed``: widths, facades, cars and poles, colours, sun."""
    rng = np.random.default_rng([seed, 1414])
    left, right = -rng.uniform(7.0, 12.0), rng.uniform(7.0, 12.0)
    boxes: list[Box] = []
    colours: list[np.ndarray] = []

    def add(lo: tuple, hi: tuple, kind: str, colour: np.ndarray) -> None:
        boxes.append(Box(lo, hi, kind=kind))
        colours.append(colour.astype(np.float32))

    for side, wall in ((-1, left), (1, right)):  # sidewalks, then facades in blocks
        kerb = wall - side * rng.uniform(2.0, 3.5)
        lo_x, hi_x = sorted((kerb, wall))
        add((lo_x, -10.0, 0.0), (hi_x, STREET_END, 0.15), "sidewalk", np.full(3, 0.45))
        y = -10.0
        while y < STREET_END:
            depth = rng.uniform(14.0, 40.0)
            setback = rng.uniform(0.0, 2.5)
            height = rng.uniform(6.0, 25.0)
            face = wall + side * setback
            lo_x, hi_x = sorted((face, face + side * 30.0))
            hue = rng.uniform(0.0, 1.0)
            colour = 0.25 + 0.5 * np.abs(np.sin(2 * math.pi * (hue + np.array([0, 1, 2]) / 3)))
            add((lo_x, y, 0.0), (hi_x, y + depth, height), "building", colour * 0.8)
            y += depth + rng.uniform(0.0, 6.0)
        for _ in range(rng.integers(2, 6)):  # poles on the kerb
            py = rng.uniform(3.0, 80.0)
            px = kerb - side * 0.3
            add((px - 0.1, py - 0.1, 0.0), (px + 0.1, py + 0.1, rng.uniform(3.0, 6.0)), "pole",
                np.full(3, 0.3))  # fmt: skip
        for _ in range(rng.integers(2, 7)):  # parked cars along the kerb
            cy = rng.uniform(4.0, 70.0)
            cx = kerb + side * 1.1
            add((cx - 0.9, cy, 0.0), (cx + 0.9, cy + 4.2, 1.5), "car", rng.uniform(0.05, 0.8, 3))
    for _ in range(rng.integers(0, 4)):  # cars in the lanes ahead
        cy = rng.uniform(8.0, 60.0)
        cx = rng.choice([-1.8, 1.8]) + rng.uniform(-0.3, 0.3)
        add((cx - 0.9, cy, 0.0), (cx + 0.9, cy + 4.4, 1.5), "car", rng.uniform(0.05, 0.8, 3))
    sun = np.array([rng.uniform(-0.5, 0.5), rng.uniform(-0.6, 0.2), rng.uniform(0.4, 0.9)])
    return Street(
        left=left,
        right=right,
        boxes=boxes,
        colours={
            "road": np.array([0.12, 0.12, 0.13], np.float32),
            "sky": np.array([0.45, 0.62, 0.9], np.float32),
        },
        box_colours=colours,
        sun=(sun / np.linalg.norm(sun)).astype(np.float32),
        yaw=float(rng.uniform(-0.04, 0.04)),
        pitch=float(rng.uniform(-0.02, 0.01)),
    )


def render_street(
    seed: int, frame: int, height: int = KITTI_SIZE[0], width: int = KITTI_SIZE[1]
) -> tuple[np.ndarray, np.ndarray]:
    """Frame ``frame`` of drive ``seed``: (rgb uint8 HxWx3, dense z-depth float32 HxW metres,
    0 where the ray reaches the sky)."""
    street = sample_street(seed)
    camera = Camera((0.6, frame * FRAME_STEP, CAMERA_HEIGHT), yaw=street.yaw, pitch=street.pitch)
    room = Box((street.left - 40.0, -20.0, 0.0), (street.right + 40.0, STREET_END, SKY_HEIGHT))
    hits = cast_rays(camera, room, street.boxes, height, width, kitti_intrinsics(height, width))
    room = hits.label == 0  # not a box: the road, far facades through gaps, or the sky
    ground = room & (hits.axis == 2) & (hits.dirs[2] < 0)
    sky = room & ~ground & (hits.axis != 0)  # up through the top, or past the street's end
    depth = np.where(sky, 0.0, hits.t).astype(np.float32)
    rgb = _shade(street, camera, hits, ground, sky)
    return rgb, depth


def _shade(
    street: Street, camera: Camera, hits: object, ground: np.ndarray, sky: np.ndarray
) -> np.ndarray:
    """Flat colours, Lambert shading from the sun, lane marks, windows, noise; sky gradient."""
    t, label, axis, dirs = hits.t, hits.label, hits.axis, hits.dirs  # type: ignore[attr-defined]
    o = np.asarray(camera.position, np.float32)
    points = o[:, None, None] + dirs * t[None]
    table = np.stack([street.colours["road"], *street.box_colours])
    colour = table[label]
    colour[(label == 0) & ~ground] = 0.35  # far facades seen through the gaps
    normal_z = (axis == 2).astype(np.float32)
    normal_x = (axis == 0).astype(np.float32) * -np.sign(dirs[0])
    normal_y = (axis == 1).astype(np.float32) * -np.sign(dirs[1])
    lambert = np.clip(normal_x * street.sun[0] + normal_y * street.sun[1]
                      + normal_z * street.sun[2], 0.0, 1.0)  # fmt: skip
    light = 0.35 + 0.65 * lambert
    x, y, z = points
    marks = ground & (np.abs(x) < 0.08) & (np.mod(y, 6.0) < 3.0)
    colour[marks] = 0.8
    kinds = np.array(["road", *[b.kind for b in street.boxes]])
    building = kinds[label] == "building"
    windows = building & (np.mod(z, 3.0) > 1.2) & (np.mod(z, 3.0) < 2.3)
    windows &= np.mod(np.where(axis == 0, y, x), 2.5) < 1.4
    colour[windows] *= 0.35
    grain = np.sin(x * 7.3 + y * 3.1) * np.sin(y * 5.7 - z * 4.3) * 0.04
    img = colour * (light + grain)[..., None]
    up = np.clip(dirs[2] / np.sqrt((dirs**2).sum(0)), 0.0, 1.0)[..., None]
    img[sky] = (street.colours["sky"] * (0.8 + 0.4 * up) + 0.1 * (1 - up))[sky]
    img = np.clip(img, 0.0, 1.0) ** (1 / 2.2)
    img = cv2.GaussianBlur(img, (0, 0), 0.6)
    return np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)


def lidar_ground_truth(depth: np.ndarray, seed: int, keep: float = 0.7) -> np.ndarray:
    """``depth`` kept only on the rows a 64-beam lidar's scan lines cross (elevations seen from
    the camera, KITTI's intrinsics at this size) and, on those, a random ``keep`` share of the
    columns; 0 elsewhere and in the sky, as KITTI's annotated ground truth is sparse."""
    h, w = depth.shape
    _, fy, _, cy = kitti_intrinsics(h, w)
    lo, hi, beams = LIDAR_BEAMS
    elevation = np.radians(np.linspace(lo, hi, beams))
    rows = np.unique(np.rint(cy - fy * np.tan(elevation)).astype(int))
    rows = rows[(rows >= 0) & (rows < h)]
    rng = np.random.default_rng([seed, 64])
    sparse = np.zeros_like(depth)
    keep_mask = rng.random((rows.size, w)) < keep
    sparse[rows] = np.where(keep_mask, depth[rows], 0.0)
    return sparse
