"""Procedural NYU-like indoor scenes with exact metric depth (pure numpy, deterministic per seed).

Scene model. A room is an axis-aligned box in world coordinates (metres; x across, y along,
z up; floor at z=0): width 3-7 m, depth 3.5-8 m, height 2.4-3.2 m. On its floor stand 3-8
axis-aligned pieces of furniture (beds, tables with legs, cupboards, bookshelves, sofas,
dressers, stools; 0.3-2 m), most against a wall; on its walls hang up to three thin boxes
(pictures, doors, windows, shelves) and from its ceiling one or two lamps. A pinhole camera with
the NYU Kinect intrinsics stands inside (height 1.0-1.7 m, at least 0.5 m from every surface),
looking into the room (away from a wall behind it, or towards the centre) with pitch -25..+5
deg and roll +-5 deg, placed so every visible point is closer than 10 m; of a few such poses
the one that sees the most furniture is kept.

Rendering casts one ray per pixel (centre of pixel ``(u, v)`` at ``(u, v)``) against the room's
interior and every box with the slab method, all pixels at once; the nearest positive hit wins,
its slab axis gives the normal, and depth is z-depth along the optical axis, as a Kinect reports
it (ray directions are scaled to unit forward component, so the ray parameter *is* z). Colour is
Lambertian shading from the lamps (inverse-square falloff) plus ambient, soft contact and corner
darkening, textures evaluated at the hit point's WORLD coordinates (floor boards, tiles, carpet,
painted or striped walls with a skirting board, wood grain, fabric, books, drawers, pictures), so
they shrink with distance, a per-scene random palette, auto exposure, gamma, slight optical blur
and sensor noise (RGB only). All randomness comes from ``numpy.random.default_rng(seed)``; the
scene is drawn before any resolution-dependent work, so a seed is the same scene at any size.
"""

from __future__ import annotations

import collections.abc
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import cv2
import numpy as np

from densedepth.camera import KINECT_INTRINSICS  # fx, fy, cx, cy at 640x480
from densedepth.depth import MAX_DEPTH

_BASE_HW = (480, 640)
_CAMERA_CLEARANCE = 0.5  # metres from the camera to every surface
# every room corner (hence every visible point) is closer than this: inside NYU's valid range
_FAR_LIMIT = MAX_DEPTH - 0.2  # 9.8 m


# ---------------------------------------------------------------------------------------------
# Geometry: camera, boxes, ray casting
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Camera:
    """Pinhole camera pose. Angles in radians: ``yaw`` 0 looks along +y and turns towards +x,
    ``pitch`` > 0 looks up, ``roll`` turns the image clockwise about the optical axis."""

    position: tuple[float, float, float]
    yaw: float = 0.0
    pitch: float = 0.0
    roll: float = 0.0

    def rotation(self) -> np.ndarray:
        """3x3 matrix whose columns are the camera's right, down and forward axes in world space."""
        cy, sy = math.cos(self.yaw), math.sin(self.yaw)
        cp, sp = math.cos(self.pitch), math.sin(self.pitch)
        cr, sr = math.cos(self.roll), math.sin(self.roll)
        f0 = np.array([sy, cy, 0.0])
        r0 = np.array([cy, -sy, 0.0])
        up = np.array([0.0, 0.0, 1.0])
        forward = cp * f0 + sp * up
        up1 = -sp * f0 + cp * up
        right = cr * r0 + sr * up1
        up2 = -sr * r0 + cr * up1
        return np.stack([right, -up2, forward], axis=1)


@dataclass(frozen=True)
class Box:
    """Axis-aligned box ``lo``..``hi`` (metres, world frame) with an optional material; ``kind``
    names what it is ("bed", "table-leg", "picture", "lamp", ...) and ``on_floor`` marks
    furniture (which casts a contact shadow)."""

    lo: tuple[float, float, float]
    hi: tuple[float, float, float]
    material: Material | None = None
    on_floor: bool = False
    kind: str = "box"


@dataclass(eq=False)
class Material:
    """Surface appearance: a texture ``kind``, two linear-RGB colours and a few parameters."""

    kind: str
    c1: np.ndarray
    c2: np.ndarray
    scale: float = 0.2
    waves: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    emission: float = 0.0
    extra: dict[str, float] = field(default_factory=dict)


@dataclass
class Hits:
    """Nearest hit of every pixel's ray: z-depth ``t``, ``label`` (0 = room, i+1 = boxes[i]),
    slab ``axis`` (0, 1, 2 = x, y, z) and the ray directions ``dirs`` (3, H, W)."""

    t: np.ndarray
    label: np.ndarray
    axis: np.ndarray
    dirs: np.ndarray


def intrinsics(height: int = 480, width: int = 640) -> tuple[float, float, float, float]:
    """Kinect intrinsics scaled to ``height`` x ``width`` (pixel centres at integer coordinates,
    so a 2x downsample maps full-resolution ``u`` to ``(u - 0.5) / 2``)."""
    fx, fy, cx, cy = KINECT_INTRINSICS
    sx, sy = width / _BASE_HW[1], height / _BASE_HW[0]
    return fx * sx, fy * sy, (cx + 0.5) * sx - 0.5, (cy + 0.5) * sy - 0.5


Intrinsics = tuple[float, float, float, float]  # fx, fy, cx, cy in pixels


@lru_cache(maxsize=8)
def _pixel_rays(
    height: int, width: int, intr: Intrinsics | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Normalised image coordinates ``(u - cx) / fx`` (1, W) and ``(v - cy) / fy`` (H, 1)
    (``intr``: the camera's, default the Kinect's scaled to the size)."""
    fx, fy, cx, cy = intr or intrinsics(height, width)
    xn = ((np.arange(width, dtype=np.float64) - cx) / fx).astype(np.float32)[None, :]
    yn = ((np.arange(height, dtype=np.float64) - cy) / fy).astype(np.float32)[:, None]
    xn.setflags(write=False)
    yn.setflags(write=False)
    return xn, yn


def _ray_dirs(
    camera: Camera, height: int, width: int, intr: Intrinsics | None = None
) -> np.ndarray:
    """World ray directions (3, H, W) float32 with unit component along the optical axis."""
    xn, yn = _pixel_rays(height, width, intr)
    rot = camera.rotation().astype(np.float32)
    dirs = np.empty((3, height, width), np.float32)
    for k in range(3):
        dirs[k] = rot[k, 0] * xn + rot[k, 1] * yn + rot[k, 2]
    return dirs


_CORNERS = np.array(np.meshgrid([0, 1], [0, 1], [0, 1], indexing="ij")).reshape(3, 8).T


def _box_windows(
    camera: Camera,
    boxes: Sequence[Box],
    height: int,
    width: int,
    intr: Intrinsics | None = None,
) -> list[tuple[slice, slice] | None]:
    """Per box, a pixel rectangle that contains its projection (the full image if it straddles
    the camera plane, None if it is entirely behind the camera or off screen)."""
    if not boxes:
        return []
    fx, fy, cx, cy = intr or intrinsics(height, width)
    lo = np.array([b.lo for b in boxes], np.float64)[:, None, :]
    hi = np.array([b.hi for b in boxes], np.float64)[:, None, :]
    corners = lo + _CORNERS[None] * (hi - lo)  # (n, 8, 3)
    cam = (corners - np.asarray(camera.position)) @ camera.rotation()  # camera coordinates
    z = cam[..., 2]
    zs = np.maximum(z, 1e-3)
    u, v = fx * cam[..., 0] / zs + cx, fy * cam[..., 1] / zs + cy
    u0 = np.clip(np.floor(u.min(1)) - 1, 0, width).astype(int)
    u1 = np.clip(np.ceil(u.max(1)) + 2, 0, width).astype(int)
    v0 = np.clip(np.floor(v.min(1)) - 1, 0, height).astype(int)
    v1 = np.clip(np.ceil(v.max(1)) + 2, 0, height).astype(int)
    behind, straddle = (z <= 0).all(1), (z <= 1e-3).any(1)
    out: list[tuple[slice, slice] | None] = []
    for i in range(len(boxes)):
        if behind[i]:
            out.append(None)
        elif straddle[i]:
            out.append((slice(0, height), slice(0, width)))
        elif u0[i] >= u1[i] or v0[i] >= v1[i]:
            out.append(None)
        else:
            out.append((slice(v0[i], v1[i]), slice(u0[i], u1[i])))
    return out


def cast_rays(
    camera: Camera,
    room: Box,
    boxes: Sequence[Box],
    height: int = 480,
    width: int = 640,
    intr: Intrinsics | None = None,
) -> Hits:
    """Nearest hit of every pixel's ray inside ``room`` (camera must be inside it) among the room's
    walls and the outside of every box (slab method, vectorised over pixels); ``intr`` (fx, fy,
    cx, cy) for another camera than the Kinect."""
    dirs = _ray_dirs(camera, height, width, intr)
    safe = np.where(dirs == 0, np.float32(1e-12), dirs)
    inv = (1.0 / safe).astype(np.float32)
    o = [float(c) for c in camera.position]

    # Room interior: the exit distance is the smallest of the per-axis far slab distances.
    t = None
    axis = np.zeros((height, width), np.int8)
    for k in range(3):
        a = (room.lo[k] - o[k]) * inv[k]
        b = (room.hi[k] - o[k]) * inv[k]
        tk = np.maximum(a, b)
        if t is None:
            t = tk
        else:
            closer = tk < t
            t = np.where(closer, tk, t)
            axis[closer] = k
    assert t is not None
    label = np.zeros((height, width), np.int16)

    for i, (box, win) in enumerate(
        zip(boxes, _box_windows(camera, boxes, height, width, intr), strict=True)
    ):
        if win is None:
            continue
        tnear = tfar = None
        ax = np.zeros(inv[0][win].shape, np.int8)
        for k in range(3):
            a = (box.lo[k] - o[k]) * inv[k][win]
            b = (box.hi[k] - o[k]) * inv[k][win]
            mn, mx = np.minimum(a, b), np.maximum(a, b)
            if tnear is None:
                tnear, tfar = mn, mx
            else:
                later = mn > tnear
                tnear = np.where(later, mn, tnear)
                ax[later] = k
                tfar = np.minimum(tfar, mx)
        tw = t[win]
        hit = (tnear <= tfar) & (tnear > 0) & (tnear < tw)
        np.copyto(tw, tnear, where=hit)
        np.copyto(label[win], np.int16(i + 1), where=hit)
        np.copyto(axis[win], ax, where=hit)
    return Hits(t=t.astype(np.float32, copy=False), label=label, axis=axis, dirs=dirs)


def render_depth(
    camera: Camera, room: Box, boxes: Sequence[Box] = (), height: int = 480, width: int = 640
) -> np.ndarray:
    """z-depth (H, W) float32 metres of ``boxes`` in ``room`` seen by ``camera`` (no shading)."""
    return cast_rays(camera, room, boxes, height, width).t


def _point_box_distance(p: Sequence[float], box: Box) -> float:
    """Euclidean distance from point ``p`` to the solid box (0 inside)."""
    sq = 0.0
    for k in range(3):
        g = max(box.lo[k] - p[k], 0.0, p[k] - box.hi[k])
        sq += g * g
    return math.sqrt(sq)


def _free_distance(
    p: Sequence[float], d: Sequence[float], room: Box, boxes: Sequence[Box]
) -> float:
    """Distance along one ray (parameter units of ``d``) from ``p`` inside the room to the first
    surface."""
    inv = [1.0 / (x if x != 0 else 1e-12) for x in d]
    best = min(max((room.lo[k] - p[k]) * inv[k], (room.hi[k] - p[k]) * inv[k]) for k in range(3))
    for box in boxes:
        tn, tf = -math.inf, math.inf
        for k in range(3):
            a, b = (box.lo[k] - p[k]) * inv[k], (box.hi[k] - p[k]) * inv[k]
            tn, tf = max(tn, min(a, b)), min(tf, max(a, b))
        if 0 < tn <= tf:
            best = min(best, tn)
    return best


# ---------------------------------------------------------------------------------------------
# Scene sampling
# ---------------------------------------------------------------------------------------------


@dataclass
class Scene:
    """Everything ``render_scene`` draws from the seed: geometry, camera, lights, materials."""

    room: Box
    boxes: list[Box]
    camera: Camera
    lights: list[tuple[np.ndarray, float]]
    floor: Material
    ceiling: Material
    walls: list[Material]  # x=0, x=W, y=0, y=D
    skirting: np.ndarray
    ambient: float
    noise_sigma: float
    exposure: float


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    """HSV (all in 0..1) to linear RGB float32."""
    i = int(h * 6.0) % 6
    f = h * 6.0 - math.floor(h * 6.0)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    rgb = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]
    return (np.asarray(rgb, np.float32)) ** 2.2


def _waves(rng: np.random.Generator, n: int, fmin: float, fmax: float, amp: float) -> np.ndarray:
    """``n`` random plane waves (fa, fb, phase, amplitude) for smooth world-space noise."""
    ang = rng.uniform(0, math.pi, n)
    freq = rng.uniform(fmin, fmax, n)
    return np.stack(
        [freq * np.cos(ang), freq * np.sin(ang), rng.uniform(0, 2 * math.pi, n), np.full(n, amp)],
        axis=1,
    ).astype(np.float32)


_FURNITURE = {
    # kind: (along-wall range, depth range, height range, texture kinds)
    "bed": ((0.9, 1.8), (1.9, 2.0), (0.45, 0.6), ("fabric", "plain")),
    "table": ((0.8, 1.8), (0.6, 1.0), (0.72, 0.78), ("wood",)),
    "cupboard": ((0.6, 1.5), (0.45, 0.65), (1.3, 2.0), ("wood", "plain", "drawers")),
    "bookshelf": ((0.6, 1.2), (0.3, 0.4), (0.9, 2.0), ("books",)),
    "sofa": ((1.4, 2.0), (0.8, 0.95), (0.75, 0.9), ("fabric",)),
    "dresser": ((0.8, 1.6), (0.4, 0.55), (0.6, 1.0), ("drawers", "wood")),
    "stool": ((0.35, 0.5), (0.35, 0.5), (0.4, 0.6), ("wood", "plain", "fabric")),
}
_FURNITURE_KINDS = tuple(_FURNITURE)
_FURNITURE_P = np.array([0.12, 0.2, 0.15, 0.15, 0.1, 0.13, 0.15])


def _material(rng: np.random.Generator, kind: str, hue: float | None = None) -> Material:
    """A random material of texture ``kind`` (colours drawn from the scene's hue if given)."""
    h = rng.uniform(0, 1) if hue is None else (hue + rng.normal(0, 0.06)) % 1.0
    if kind == "wood":
        c1 = _hsv(rng.uniform(0.05, 0.11), rng.uniform(0.35, 0.7), rng.uniform(0.35, 0.85))
        c2 = c1 * rng.uniform(0.55, 0.8)
        return Material(kind, c1, c2, rng.uniform(30, 80), _waves(rng, 3, 1, 6, 1.0))
    if kind == "fabric":
        c1 = _hsv(h, rng.uniform(0.15, 0.7), rng.uniform(0.35, 0.9))
        c2 = c1 * rng.uniform(0.7, 0.92)
        return Material(kind, c1, c2, rng.uniform(0.03, 0.12), _waves(rng, 3, 2, 8, 0.05))
    if kind == "books":
        c1 = _hsv(rng.uniform(0.05, 0.11), rng.uniform(0.3, 0.6), rng.uniform(0.3, 0.7))
        return Material(kind, c1, c1 * 0.3, rng.uniform(0.3, 0.4), _waves(rng, 2, 2, 6, 0.03))
    if kind == "drawers":
        c1 = _hsv(h, rng.uniform(0.0, 0.5), rng.uniform(0.4, 0.95))
        return Material(kind, c1, c1 * 0.45, rng.uniform(0.18, 0.35), _waves(rng, 2, 2, 6, 0.03))
    if kind == "picture":
        c1 = _hsv(rng.uniform(0, 1), rng.uniform(0.0, 0.6), rng.uniform(0.1, 0.9))
        c2 = _hsv(rng.uniform(0, 1), rng.uniform(0.3, 0.9), rng.uniform(0.4, 1.0))
        extra = {f"c3_{j}": float(x) for j, x in enumerate(_hsv(rng.uniform(0, 1), 0.7, 0.8))}
        return Material(kind, c1, c2, 0.04, _waves(rng, 4, 3, 14, 1.0), extra=extra)
    if kind == "window":
        sky = _hsv(rng.uniform(0.55, 0.62), rng.uniform(0.05, 0.35), 1.0)
        frame = _hsv(0.0, 0.0, rng.uniform(0.75, 0.95))
        return Material(kind, sky, frame, 0.05, emission=rng.uniform(1.5, 3.0))
    if kind == "lamp":
        return Material(kind, np.ones(3, np.float32), np.ones(3, np.float32), 0.0, emission=4.0)
    # "plain": painted / laminated surface with subtle large-scale variation
    c1 = _hsv(h, rng.uniform(0.0, 0.6), rng.uniform(0.3, 0.95))
    return Material("plain", c1, c1 * 0.9, 0.0, _waves(rng, 3, 1, 5, 0.04))


def _floor_material(rng: np.random.Generator) -> Material:
    kind = str(rng.choice(["planks", "tiles", "carpet"], p=[0.5, 0.3, 0.2]))
    if kind == "planks":
        c1 = _hsv(rng.uniform(0.05, 0.11), rng.uniform(0.35, 0.75), rng.uniform(0.35, 0.85))
        m = Material(kind, c1, c1 * rng.uniform(0.5, 0.75), rng.uniform(0.1, 0.22))
        m.extra = {"length": rng.uniform(0.9, 2.0), "along_x": float(rng.uniform() < 0.5)}
        m.waves = _waves(rng, 2, 1, 4, 1.0)
        return m
    if kind == "tiles":
        c1 = _hsv(rng.uniform(0, 1), rng.uniform(0.0, 0.25), rng.uniform(0.45, 0.95))
        c2 = c1 * rng.uniform(0.55, 0.9) if rng.uniform() < 0.5 else c1
        m = Material(kind, c1, c2, rng.uniform(0.3, 0.6))
        m.extra = {"grout": rng.uniform(0.4, 0.8)}
        m.waves = _waves(rng, 3, 1, 6, 0.04)
        return m
    c1 = _hsv(rng.uniform(0, 1), rng.uniform(0.1, 0.5), rng.uniform(0.25, 0.75))
    return Material("carpet", c1, c1 * 0.8, 0.0, _waves(rng, 4, 2, 12, 0.06))


def _wall_material(rng: np.random.Generator, hue: float) -> Material:
    if rng.uniform() < 0.3:
        c1 = _hsv((hue + rng.normal(0, 0.05)) % 1, rng.uniform(0.05, 0.4), rng.uniform(0.6, 0.95))
        c2 = c1 * rng.uniform(0.7, 0.9)
        m = Material("stripes", c1, c2, rng.uniform(0.08, 0.3), _waves(rng, 3, 0.5, 4, 0.03))
        m.extra = {"duty": rng.uniform(0.3, 0.7)}
        return m
    c1 = _hsv((hue + rng.normal(0, 0.05)) % 1, rng.uniform(0.0, 0.35), rng.uniform(0.55, 0.95))
    return Material("plain", c1, c1, 0.0, _waves(rng, 3, 0.5, 4, 0.04))


def _furniture(rng: np.random.Generator, rw: float, rd: float, rh: float, hue: float) -> list[Box]:
    """3-8 pieces standing on the floor, most against a wall, footprints mostly disjoint."""
    boxes: list[Box] = []
    footprints: list[tuple[float, float, float, float]] = []
    for _ in range(int(rng.integers(3, 9))):
        kind = str(rng.choice(_FURNITURE_KINDS, p=_FURNITURE_P))
        along_r, depth_r, height_r, textures = _FURNITURE[kind]
        mat = _material(rng, str(rng.choice(textures)), hue)
        legs = kind == "table" or (kind == "stool" and rng.uniform() < 0.5)
        for attempt in range(30):
            shrink = 1.0 if attempt < 15 else 0.6
            along = max(rng.uniform(*along_r) * shrink, 0.3)
            depth = max(rng.uniform(*depth_r) * shrink, 0.3)
            height = min(rng.uniform(*height_r), rh - 0.3)
            wall = int(rng.integers(0, 5))  # 0..3: against that wall, 4: free standing
            if kind in ("table", "stool") and rng.uniform() < 0.5:
                wall = 4
            if wall == 4:
                if rng.uniform() < 0.5:
                    along, depth = depth, along
                x0 = rng.uniform(0.3, max(rw - along - 0.3, 0.31))
                y0 = rng.uniform(0.3, max(rd - depth - 0.3, 0.31))
                sx, sy = along, depth
            elif wall < 2:  # against x=0 or x=W: along the y axis
                sx, sy = depth, along
                gap = rng.uniform(0.0, 0.05)
                x0 = gap if wall == 0 else rw - depth - gap
                y0 = rng.uniform(0.0, max(rd - along, 0.0))
            else:  # against y=0 or y=D: along the x axis
                sx, sy = along, depth
                gap = rng.uniform(0.0, 0.05)
                y0 = gap if wall == 2 else rd - depth - gap
                x0 = rng.uniform(0.0, max(rw - along, 0.0))
            fp = (x0 - 0.05, y0 - 0.05, x0 + sx + 0.05, y0 + sy + 0.05)
            if fp[2] > rw or fp[3] > rd or x0 < 0 or y0 < 0:
                continue
            clash = any(
                fp[0] < q[2] and q[0] < fp[2] and fp[1] < q[3] and q[1] < fp[3] for q in footprints
            )
            if not clash:
                break
        else:
            continue
        footprints.append(fp)
        if legs:
            top = 0.04
            leg = min(0.06, 0.15 * min(sx, sy))
            boxes.append(Box((x0, y0, height - top), (x0 + sx, y0 + sy, height), mat, True, kind))
            for lx in (x0, x0 + sx - leg):
                for ly in (y0, y0 + sy - leg):
                    boxes.append(
                        Box(
                            (lx, ly, 0.0),
                            (lx + leg, ly + leg, height - top),
                            mat,
                            True,
                            f"{kind}-leg",
                        )
                    )
        else:
            boxes.append(Box((x0, y0, 0.0), (x0 + sx, y0 + sy, height), mat, True, kind))
    return boxes


def _wall_items(rng: np.random.Generator, rw: float, rd: float, rh: float, hue: float) -> list[Box]:
    """0-3 thin boxes on the walls: pictures, a door, a window, a shelf."""
    items: list[Box] = []
    for _ in range(int(rng.integers(0, 4))):
        kind = str(rng.choice(["picture", "door", "window", "shelf"], p=[0.45, 0.2, 0.2, 0.15]))
        if kind == "picture":
            along, thick = rng.uniform(0.3, 1.2), rng.uniform(0.02, 0.04)
            tall = rng.uniform(0.3, 0.9)
            z0 = rng.uniform(1.0, max(rh - tall - 0.2, 1.01))
            mat = _material(rng, "picture")
        elif kind == "door":
            along, thick, tall, z0 = rng.uniform(0.8, 0.95), 0.03, min(2.05, rh - 0.2), 0.0
            mat = _material(rng, str(rng.choice(["wood", "plain"])), hue)
        elif kind == "window":
            along, thick = rng.uniform(0.8, 1.8), 0.03
            tall = min(rng.uniform(0.9, 1.4), rh - 1.1)
            z0 = rng.uniform(0.8, 1.0)
            mat = _material(rng, "window")
        else:
            along, thick, tall = rng.uniform(0.6, 1.2), rng.uniform(0.2, 0.3), 0.04
            z0 = rng.uniform(1.2, min(2.0, rh - 0.3))
            mat = _material(rng, "wood")
        wall = int(rng.integers(0, 4))
        span = rd if wall < 2 else rw
        if along > span - 0.2:
            continue
        a0 = rng.uniform(0.1, span - along - 0.1)
        if wall == 0:
            lo, hi = (0.0, a0, z0), (thick, a0 + along, z0 + tall)
        elif wall == 1:
            lo, hi = (rw - thick, a0, z0), (rw, a0 + along, z0 + tall)
        elif wall == 2:
            lo, hi = (a0, 0.0, z0), (a0 + along, thick, z0 + tall)
        else:
            lo, hi = (a0, rd - thick, z0), (a0 + along, rd, z0 + tall)
        items.append(Box(lo, hi, mat, False, kind))
    return items


def _place_camera(
    rng: np.random.Generator, room: Box, boxes: list[Box]
) -> tuple[Camera, list[Box]]:
    """A camera pose >= 0.5 m from every surface, looking roughly into the room; boxes that no
    pose can keep clear of are dropped (rare)."""
    rw, rd, rh = room.hi
    corners = np.array(np.meshgrid(*zip(room.lo, room.hi, strict=True), indexing="ij"))
    corners = corners.reshape(3, -1).T
    centre = np.array([rw / 2, rd / 2])
    c = _CAMERA_CLEARANCE
    fallback = None
    candidates: list[tuple[float, Camera]] = []
    pieces = [b for b in boxes if b.on_floor and min(np.subtract(b.hi, b.lo)) > 0.1]
    for attempt in range(400):
        z = rng.uniform(1.0, min(1.7, rh - c))
        back = int(rng.integers(0, 5))  # 0..3: stand near that wall and look away from it
        if back == 4:
            p = np.array([rng.uniform(c, rw - c), rng.uniform(c, rd - c), z])
            to_centre = centre - p[:2]
            yaw = math.atan2(to_centre[0], to_centre[1]) + rng.uniform(-1.0, 1.0)
        else:
            near = rng.uniform(c, c + 1.2)
            if back < 2:
                x = near if back == 0 else rw - near
                p = np.array([x, rng.uniform(c, rd - c), z])
                yaw = (math.pi / 2 if back == 0 else -math.pi / 2) + rng.uniform(-0.7, 0.7)
            else:
                y = near if back == 2 else rd - near
                p = np.array([rng.uniform(c, rw - c), y, z])
                yaw = (0.0 if back == 2 else math.pi) + rng.uniform(-0.7, 0.7)
        if not (c <= p[0] <= rw - c and c <= p[1] <= rd - c):
            continue
        if np.max(np.linalg.norm(corners - p, axis=1)) >= _FAR_LIMIT:
            continue
        if fallback is None:
            fallback = p
        if any(_point_box_distance(p, b) < c for b in boxes):
            continue
        pitch = math.radians(rng.triangular(-25.0, -10.0, 5.0))
        roll = math.radians(rng.uniform(-5.0, 5.0))
        cam = Camera((float(p[0]), float(p[1]), float(p[2])), yaw, pitch, roll)
        fwd = [float(x) for x in cam.rotation()[:, 2]]
        need = 1.6 if attempt < 300 else 0.8
        free_room = _free_distance(p, fwd, room, [])
        if free_room < need + 0.8 or _free_distance(p, fwd, room, boxes) < need:
            continue
        score = _pieces_in_view(cam, pieces) + 0.3 * min(free_room, 5.0)
        candidates.append((score, cam))
        if len(candidates) == 6:
            break
    if candidates:
        return max(candidates, key=lambda sc: sc[0])[1], boxes
    # Fallback: keep a valid position, drop the boxes it is too close to.
    p = fallback if fallback is not None else np.array([rw / 2, rd / 2, min(1.3, rh - c)])
    kept = [b for b in boxes if _point_box_distance(p, b) >= c]
    yaw = math.atan2(centre[0] - p[0], centre[1] - p[1])
    return Camera((float(p[0]), float(p[1]), float(p[2])), yaw, math.radians(-10.0), 0.0), kept


def _pieces_in_view(camera: Camera, boxes: Sequence[Box]) -> int:
    """How many box centres project inside the (640x480) image, in front of the camera."""
    if not boxes:
        return 0
    fx, fy, cx, cy = KINECT_INTRINSICS
    centres = np.array([np.add(b.lo, b.hi) / 2 for b in boxes]).T
    cam = camera.rotation().T @ (centres - np.asarray(camera.position)[:, None])
    z = np.maximum(cam[2], 1e-6)
    u, v = fx * cam[0] / z + cx, fy * cam[1] / z + cy
    inside = (cam[2] > 0.3) & (u > 20) & (u < 620) & (v > 20) & (v < 460)
    return int(inside.sum())


def sample_scene(seed: int) -> Scene:
    """Draw one scene (geometry, camera, lights, materials) from ``default_rng(seed)``."""
    return _sample_scene(_rng(seed))


def _rng(seed: int) -> np.random.Generator:
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    return np.random.default_rng(seed)


def _sample_scene(rng: np.random.Generator) -> Scene:
    rw, rd, rh = rng.uniform(3.0, 7.0), rng.uniform(3.5, 8.0), rng.uniform(2.4, 3.2)
    room = Box((0.0, 0.0, 0.0), (rw, rd, rh))
    hue = rng.uniform(0, 1)
    floor = _floor_material(rng)
    ceiling = Material("plain", _hsv(hue, 0.05, rng.uniform(0.85, 0.97)), np.zeros(3, np.float32))
    ceiling.waves = _waves(rng, 2, 0.5, 3, 0.02)
    wall = _wall_material(rng, hue)
    walls = [wall] * 4
    if rng.uniform() < 0.35:  # an accent wall
        accent = int(rng.integers(0, 4))
        walls[accent] = _wall_material(rng, (hue + rng.uniform(0.2, 0.8)) % 1)
    skirting = _hsv(rng.uniform(0.05, 0.1), rng.uniform(0.0, 0.5), rng.uniform(0.5, 0.95))
    boxes = _furniture(rng, rw, rd, rh, hue) + _wall_items(rng, rw, rd, rh, hue)

    lights: list[tuple[np.ndarray, float]] = []
    for _ in range(int(rng.integers(1, 3))):
        lx, ly = rng.uniform(0.25 * rw, 0.75 * rw), rng.uniform(0.2 * rd, 0.8 * rd)
        power = rng.uniform(3.0, 6.0)
        lights.append((np.array([lx, ly, rh - 0.3], np.float32), power))
        half = rng.uniform(0.12, 0.25)
        lamp = _material(rng, "lamp")
        lo, hi = (lx - half, ly - half, rh - 0.25), (lx + half, ly + half, rh)
        boxes.append(Box(lo, hi, lamp, False, "lamp"))

    camera, boxes = _place_camera(rng, room, boxes)
    return Scene(
        room=room,
        boxes=boxes,
        camera=camera,
        lights=lights,
        floor=floor,
        ceiling=ceiling,
        walls=walls,
        skirting=skirting,
        ambient=rng.uniform(0.12, 0.3),
        noise_sigma=rng.uniform(0.006, 0.02),
        exposure=rng.uniform(0.75, 1.0),
    )


# ---------------------------------------------------------------------------------------------
# Textures (all from world coordinates a, b in the surface's plane, metres)
# ---------------------------------------------------------------------------------------------


def _hash(i: np.ndarray, j: np.ndarray | float = 0.0) -> np.ndarray:
    """Deterministic pseudo-random value in [0, 1) per integer lattice cell."""
    x = np.sin(i.astype(np.float64) * 12.9898 + np.asarray(j, np.float64) * 78.233) * 43758.5453
    return (x - np.floor(x)).astype(np.float32)


def _wave_noise(waves: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    out = np.zeros_like(a)
    for fa, fb, ph, amp in waves:
        out += amp * np.sin(fa * a + fb * b + ph)
    return out


def _mix(c1: np.ndarray, c2: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Per-point blend (N, 3) of colours c1 (w=0) and c2 (w=1)."""
    return c1[None, :] + w[:, None] * (c2 - c1)[None, :]


def _texture(mat: Material, a: np.ndarray, b: np.ndarray, front: bool) -> np.ndarray:
    """Albedo (N, 3) of ``mat`` at in-plane coordinates ``a`` (horizontal) and ``b``; ``front``
    marks the face a picture/window/shelf shows to the room or a side face of furniture."""
    kind = mat.kind
    if kind == "planks":
        u, v = (a, b) if mat.extra["along_x"] else (b, a)
        row = np.floor(v / mat.scale)
        length = mat.extra["length"]
        shifted = u + _hash(row, 3.1) * length
        col = np.floor(shifted / length)
        h = _hash(row, col)
        grain = 0.5 + 0.5 * np.sin(40.0 * v + 3.0 * np.sin(2.0 * u + 7.0 * h) + 6.0 * h)
        albedo = _mix(mat.c1, mat.c2, 0.6 * h + 0.4 * grain * grain)
        fv, fu = v / mat.scale - row, shifted / length - col
        seam = (fv < 0.04) | (fu < 0.006)
        return albedo * np.where(seam, 0.45, 1.0).astype(np.float32)[:, None]
    if kind == "tiles":
        s = mat.scale
        ia, ib = np.floor(a / s), np.floor(b / s)
        checker = (ia + ib) % 2
        h = _hash(ia, ib)
        albedo = (
            _mix(mat.c1, mat.c2, checker)
            * (0.93 + 0.14 * h + _wave_noise(mat.waves, a, b))[:, None]
        )
        fa, fb = a / s - ia, b / s - ib
        grout = (np.minimum(fa, 1 - fa) < 0.012 / s) | (np.minimum(fb, 1 - fb) < 0.012 / s)
        return np.where(grout[:, None], mat.c1 * mat.extra["grout"], albedo)
    if kind == "stripes":
        stripe = ((a / mat.scale) % 1.0 < mat.extra["duty"]).astype(np.float32)
        return _mix(mat.c1, mat.c2, stripe) * (1.0 + _wave_noise(mat.waves, a, b))[:, None]
    if kind == "wood":
        warp = _wave_noise(mat.waves, a * 0.7, b * 0.3)
        ring = 0.5 + 0.5 * np.sin(mat.scale * (b + 0.02 * warp) + 1.5 * np.sin(2.0 * a + warp))
        return _mix(mat.c1, mat.c2, 0.25 + 0.5 * ring**4)
    if kind == "fabric":
        ia, ib = np.floor(a / mat.scale), np.floor(b / mat.scale)
        check = ((ia + ib) % 2) * 0.6
        return _mix(mat.c1, mat.c2, check) * (1.0 + _wave_noise(mat.waves, a, b))[:, None]
    if kind == "books":
        if not front:
            return np.broadcast_to(mat.c1, (a.size, 3)).astype(np.float32)
        shelf = np.floor(b / mat.scale)
        fb = b / mat.scale - shelf
        book_w = 0.025 + 0.03 * _hash(shelf, 1.7)
        ib = np.floor(a / book_w)
        hb = _hash(ib, shelf)
        colour = np.stack(
            [_hash(ib, shelf + 0.31), _hash(ib, shelf + 0.57), _hash(ib, shelf + 0.83)], 1
        )
        colour = (0.15 + 0.7 * colour) ** 2.2 * (0.6 + 0.4 * hb)[:, None]
        tall = 0.55 + 0.4 * hb
        board = (fb < 0.08) | (fb > 0.08 + 0.92 * tall)
        return np.where(
            board[:, None], mat.c1[None, :] * np.where(fb < 0.08, 1.0, 0.25)[:, None], colour
        ).astype(np.float32)
    if kind == "drawers":
        fb = (b / mat.scale) % 1.0
        line = (fb < 0.03) | ((np.abs(fb - 0.5) < 0.015) & front)
        albedo = (
            np.broadcast_to(mat.c1, (a.size, 3)) * (1.0 + _wave_noise(mat.waves, a, b))[:, None]
        )
        return np.where(line[:, None], mat.c2, albedo).astype(np.float32)
    if kind == "picture":
        if not front:
            return np.broadcast_to(mat.c1, (a.size, 3)).astype(np.float32)
        n = _wave_noise(mat.waves, a, b)
        c3 = np.array([mat.extra[f"c3_{j}"] for j in range(3)], np.float32)
        w = 0.5 + 0.5 * np.tanh(2.0 * n)
        return (_mix(mat.c2, c3, w) * (0.8 + 0.2 * np.sin(3.0 * n))[:, None]).astype(np.float32)
    if kind == "window":
        return np.broadcast_to(mat.c1, (a.size, 3)).astype(np.float32)
    if kind == "lamp":
        return np.ones((a.size, 3), np.float32)
    # plain and carpet: colour with smooth large-scale variation
    var = 1.0 + _wave_noise(mat.waves, a, b)
    if kind == "carpet":
        var = var + 0.05 * (_hash(np.floor(a / 0.01), np.floor(b / 0.01)) - 0.5)
    return (mat.c1[None, :] * var[:, None]).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# Shading and the public entry points
# ---------------------------------------------------------------------------------------------

_TANGENTS = ((1, 2), (0, 2), (0, 1))  # in-plane world axes (horizontal first) per normal axis


def _select(axis: np.ndarray, comps: np.ndarray) -> np.ndarray:
    """``comps[axis[i], i]`` for (3, N) ``comps`` (faster than ``np.choose``)."""
    return np.where(axis == 0, comps[0], np.where(axis == 1, comps[1], comps[2]))


def _shade(scene: Scene, hits: Hits) -> np.ndarray:
    """Linear radiance (H, W, 3) float32 of the hit points."""
    height, width = hits.t.shape
    n_px = height * width
    t = hits.t.reshape(-1)
    dirs = hits.dirs.reshape(3, -1)
    axis = hits.axis.reshape(-1)
    label = hits.label.reshape(-1)
    origin = np.asarray(scene.camera.position, np.float32)
    pts = origin[:, None] + dirs * t[None, :]  # (3, N) world hit points
    d_axis = _select(axis, dirs)
    normal_sign = np.where(d_axis < 0, np.float32(1.0), np.float32(-1.0))  # n = -sign(d) e_axis

    # Albedo and emission per surface group (room: 6 surfaces; box i: 6 faces).
    key = (label.astype(np.int32) * 6 + axis.astype(np.int32) * 2 + (d_axis < 0)).astype(np.int32)
    order = np.argsort(key, kind="stable")
    counts = np.bincount(key, minlength=6 * (len(scene.boxes) + 1))
    starts = np.concatenate([[0], np.cumsum(counts)])
    albedo = np.empty((n_px, 3), np.float32)
    emission = np.zeros(n_px, np.float32)
    occlusion = np.ones(n_px, np.float32)
    rw, rd, rh = scene.room.hi
    for k in np.flatnonzero(counts):
        idx = order[starts[k] : starts[k + 1]]
        lab, ax, positive = int(k) // 6, (int(k) % 6) // 2, bool(k % 2)
        ta, tb = _TANGENTS[ax]
        a, b = pts[ta, idx], pts[tb, idx]
        if lab == 0:
            if ax == 2:
                mat = scene.floor if positive else scene.ceiling
                col = _texture(mat, a, b, True)
                edge = np.minimum(np.minimum(a, rw - a), np.minimum(b, rd - b))
            else:
                wall = scene.walls[ax * 2 + (0 if positive else 1)]
                col = _texture(wall, a, b, True)
                span = rd if ax == 0 else rw
                col = np.where((b < 0.09)[:, None], scene.skirting[None, :], col)
                edge = np.minimum(np.minimum(a, span - a), np.minimum(b, rh - b))
            occlusion[idx] = 1.0 - 0.35 * np.exp(-edge / 0.25)
        else:
            box = scene.boxes[lab - 1]
            mat = box.material or Material("plain", np.full(3, 0.5, np.float32), np.zeros(3))
            room_facing = ax != 2 and _faces_room(box, ax, positive, scene.room)
            front = room_facing if mat.kind in ("picture", "books", "window") else ax != 2
            col = _texture(mat, a, b, front)
            if mat.kind == "window" and front:
                ua = (a - box.lo[ta]) / (box.hi[ta] - box.lo[ta])
                ub = (b - box.lo[tb]) / (box.hi[tb] - box.lo[tb])
                bar = (np.minimum(ua, 1 - ua) * (box.hi[ta] - box.lo[ta]) < 0.05) | (
                    np.minimum(ub, 1 - ub) * (box.hi[tb] - box.lo[tb]) < 0.05
                )
                bar |= np.abs(ua - 0.5) * (box.hi[ta] - box.lo[ta]) < 0.025
                col = np.where(bar[:, None], mat.c2[None, :], col)
                emission[idx] = np.where(bar, 0.0, mat.emission)
            elif mat.kind == "lamp":
                emission[idx] = mat.emission
            if mat.kind == "picture" and front:
                da = np.minimum(a - box.lo[ta], box.hi[ta] - a)
                db = np.minimum(b - box.lo[tb], box.hi[tb] - b)
                col = np.where((np.minimum(da, db) < 0.035)[:, None], mat.c1[None, :], col)
            da = np.minimum(a - box.lo[ta], box.hi[ta] - a)
            db = np.minimum(b - box.lo[tb], box.hi[tb] - b)
            occlusion[idx] = 0.8 + 0.2 * np.clip(np.minimum(da, db) / 0.012, 0.0, 1.0)
        albedo[idx] = col

    # Contact shadows on the floor around furniture footprints.
    floor = (label == 0) & (axis == 2) & (d_axis < 0)
    if floor.any():
        fidx = np.flatnonzero(floor)
        fx, fy = pts[0, fidx], pts[1, fidx]
        shade = np.ones(fidx.size, np.float32)
        for box in scene.boxes:
            if not box.on_floor or box.lo[2] > 0.01:
                continue
            dx = np.maximum(np.maximum(box.lo[0] - fx, fx - box.hi[0]), 0.0)
            dy = np.maximum(np.maximum(box.lo[1] - fy, fy - box.hi[1]), 0.0)
            dist = np.sqrt(dx * dx + dy * dy)
            strength = 0.45 if box.hi[0] - box.lo[0] > 0.1 else 0.25
            shade *= 1.0 - strength * np.exp(-dist / 0.12)
        occlusion[fidx] *= shade

    # Lambertian point lights with inverse-square falloff, plus a hemispherical ambient term.
    irradiance = np.empty(n_px, np.float32)
    n_z = np.where(axis == 2, normal_sign, np.float32(0.0))
    irradiance[:] = scene.ambient * (0.85 + 0.15 * n_z)
    for pos, power in scene.lights:
        lvec = pos[:, None] - pts
        r2 = np.einsum("ij,ij->j", lvec, lvec) + np.float32(1e-6)
        cos = normal_sign * _select(axis, lvec) / np.sqrt(r2)
        irradiance += power * np.maximum(cos, 0.0) / (r2 + np.float32(0.5))
    radiance = albedo * (irradiance * occlusion)[:, None] + emission[:, None]
    return radiance.reshape(height, width, 3)


def _faces_room(box: Box, ax: int, positive: bool, room: Box) -> bool:
    """Whether the box face on ``ax`` with outward normal sign ``positive`` is the one opposite
    the wall the box is closest to (the visible front of a picture, window or bookshelf)."""
    gaps = [
        (box.lo[0] - room.lo[0], 0, True),
        (room.hi[0] - box.hi[0], 0, False),
        (box.lo[1] - room.lo[1], 1, True),
        (room.hi[1] - box.hi[1], 1, False),
    ]
    _, wall_ax, front_positive = min(gaps, key=lambda g: g[0])
    return ax == wall_ax and positive == front_positive


def render(
    scene: Scene, height: int = 480, width: int = 640, rng: np.random.Generator | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Render ``scene``: (rgb uint8 HxWx3, z-depth float32 HxW metres). Sensor noise is drawn
    from ``rng`` (none without one)."""
    if height < 2 or width < 2:
        raise ValueError(f"image size must be at least 2x2, got {height}x{width}")
    hits = cast_rays(scene.camera, scene.room, scene.boxes, height, width)
    radiance = _shade(scene, hits)

    # Auto exposure on a subsample, gamma, slight optical blur, sensor noise.
    lum = radiance[::4, ::4] @ np.array([0.2126, 0.7152, 0.0722], np.float32)
    ref = float(np.percentile(lum, 90.0)) + 1e-6
    img = np.clip(radiance * np.float32(scene.exposure * 0.8 / ref), 0.0, 1.0)
    img = img ** np.float32(1 / 2.2)
    sigma = 0.6 * width / _BASE_HW[1]
    if sigma >= 0.3:
        img = cv2.GaussianBlur(img, (0, 0), sigma)
    if rng is not None:
        img += rng.standard_normal(img.shape, dtype=np.float32) * np.float32(scene.noise_sigma)
    rgb = np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return rgb, hits.t


def render_scene(seed: int, height: int = 480, width: int = 640) -> tuple[np.ndarray, np.ndarray]:
    """One deterministic scene: (rgb uint8 HxWx3, depth float32 HxW metres, z-depth along the
    optical axis like a Kinect). The same seed at another size is the same scene, resampled."""
    rng = _rng(seed)
    scene = _sample_scene(rng)  # drawn first: the scene does not depend on the image size
    return render(scene, height, width, rng)


class SyntheticScenes(collections.abc.Sequence):
    """``n`` synthetic scenes; item ``i`` is ``render_scene(seed * 1_000_003 + i, height, width)``,
    rendered on demand (nothing is cached)."""

    def __init__(self, n: int, seed: int = 0, height: int = 480, width: int = 640) -> None:
        if n < 0:
            raise ValueError(f"number of scenes must be >= 0, got {n}")
        self.n, self.seed, self.height, self.width = int(n), int(seed), int(height), int(width)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:  # type: ignore[override]
        if not isinstance(i, (int, np.integer)):
            raise TypeError(f"scene index must be an integer, got {type(i).__name__}")
        j = int(i) + self.n if i < 0 else int(i)
        if not 0 <= j < self.n:
            raise IndexError(f"scene index {i} out of range for {self.n} scenes")
        return render_scene(self.seed * 1_000_003 + j, self.height, self.width)
