"""Synthetic indoor scenes: determinism, ranges, exact geometry against closed forms, shading."""

from __future__ import annotations

import math

import numpy as np
import pytest

from densedepth.data.synthetic import (
    KINECT_INTRINSICS,
    Box,
    Camera,
    Material,
    Scene,
    SyntheticScenes,
    cast_rays,
    intrinsics,
    render,
    render_depth,
    render_scene,
    sample_scene,
)

FX, FY, CX, CY = 518.857901, 519.469611, 325.582449, 253.736166
ROOM = Box((0.0, 0.0, 0.0), (4.0, 6.0, 3.0))


def _pixel_grid(height: int = 480, width: int = 640) -> tuple[np.ndarray, np.ndarray]:
    v, u = np.mgrid[0:height, 0:width]
    return u.astype(np.float64), v.astype(np.float64)


# --- API, types, ranges, determinism ----------------------------------------------------------


def test_intrinsics_constant_and_scaling() -> None:
    assert KINECT_INTRINSICS == (FX, FY, CX, CY)
    assert intrinsics(480, 640) == pytest.approx(KINECT_INTRINSICS)
    fx, fy, cx, cy = intrinsics(240, 320)
    assert (fx, fy) == pytest.approx((FX / 2, FY / 2))
    # pixel centres: full-resolution u maps to (u - 0.5) / 2 at half resolution
    assert (cx, cy) == pytest.approx(((CX - 0.5) / 2, (CY - 0.5) / 2))


@pytest.mark.parametrize("size", [(480, 640), (64, 64), (48, 80)])
def test_render_scene_types_shapes(size: tuple[int, int]) -> None:
    rgb, depth = render_scene(3, *size)
    assert rgb.dtype == np.uint8 and rgb.shape == (*size, 3)
    assert depth.dtype == np.float32 and depth.shape == size
    assert rgb.std() > 5  # not a flat image


def test_depth_within_valid_range_over_many_scenes() -> None:
    for seed in range(60):
        _, depth = render_scene(seed, 48, 64)
        assert np.isfinite(depth).all()
        assert depth.min() > 0.1 and depth.max() < 10.0, seed


def test_deterministic_per_seed() -> None:
    rgb1, d1 = render_scene(7, 96, 128)
    rgb2, d2 = render_scene(7, 96, 128)
    assert rgb1.tobytes() == rgb2.tobytes() and d1.tobytes() == d2.tobytes()
    rgb3, d3 = render_scene(8, 96, 128)
    assert rgb1.tobytes() != rgb3.tobytes() and d1.tobytes() != d3.tobytes()


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="seed"):
        render_scene(-1, 32, 32)
    with pytest.raises(ValueError, match="size"):
        render_scene(0, 1, 32)


def test_scene_model_constraints() -> None:
    for seed in range(150):
        scene = sample_scene(seed)
        w, d, h = scene.room.hi
        assert 3 <= w <= 7 and 3.5 <= d <= 8 and 2.4 <= h <= 3.2
        cam = scene.camera
        p = np.asarray(cam.position)
        assert 1.0 <= p[2] <= 1.7
        assert -25 <= math.degrees(cam.pitch) <= 5 and abs(math.degrees(cam.roll)) <= 5
        assert np.all(p >= 0.5) and np.all(np.asarray(scene.room.hi) - p >= 0.5)
        pieces = [b for b in scene.boxes if b.on_floor and not b.kind.endswith("-leg")]
        assert 3 <= len(pieces) <= 8, seed
        for b in pieces:
            size = np.subtract(b.hi, b.lo)
            assert b.lo[2] == 0 or b.kind in ("table", "stool")  # stands on the floor (or legs)
            assert min(size[0], size[1]) >= 0.3 - 1e-9 and max(size) <= 2.0 + 1e-9
        assert 1 <= sum(b.kind == "lamp" for b in scene.boxes) <= 2
        for b in scene.boxes:
            lo, hi = np.asarray(b.lo), np.asarray(b.hi)
            assert np.all(lo >= -1e-9) and np.all(hi <= np.asarray(scene.room.hi) + 1e-9)
            assert np.all(hi > lo)
            gap = np.maximum(np.maximum(lo - p, 0), p - hi)
            assert np.linalg.norm(gap) >= 0.5, seed
        corners = np.array([[x, y, z] for x in (0, w) for y in (0, d) for z in (0, h)])
        assert np.linalg.norm(corners - p, axis=1).max() < 10.0


# --- exact geometry ----------------------------------------------------------------------------


def test_camera_rotation_is_proper_and_follows_angles() -> None:
    yaw, pitch = math.radians(30), math.radians(-20)
    rot = Camera((1.0, 1.0, 1.0), yaw, pitch, math.radians(4)).rotation()
    assert rot @ rot.T == pytest.approx(np.eye(3), abs=1e-12)
    assert np.linalg.det(rot) == pytest.approx(1.0)
    forward = [math.sin(yaw) * math.cos(pitch), math.cos(yaw) * math.cos(pitch), math.sin(pitch)]
    assert rot[:, 2] == pytest.approx(forward)
    level = Camera((1.0, 1.0, 1.0), yaw, pitch, 0.0).rotation()
    assert level[2, 0] == pytest.approx(0.0, abs=1e-12)  # no roll: image rows stay horizontal


def test_wall_facing_camera_has_constant_depth() -> None:
    x0, y0, z0 = 2.0, 1.5, 1.4
    dist = ROOM.hi[1] - y0  # 4.5 m to the far wall y = 6
    depth = render_depth(Camera((x0, y0, z0)), ROOM)
    u, v = _pixel_grid()
    x = x0 + dist * (u - CX) / FX
    z = z0 - dist * (v - CY) / FY
    on_wall = (x > 1e-3) & (x < 4 - 1e-3) & (z > 1e-3) & (z < 3 - 1e-3)
    assert 0.2 < on_wall.mean() < 0.95
    np.testing.assert_allclose(depth[on_wall], dist, rtol=1e-5)
    assert np.all(depth[~on_wall] < dist + 1e-4)  # floor, ceiling, side walls are nearer


def test_wall_depth_with_yaw() -> None:
    # Looking along +x (yaw 90 deg) at the wall x = 4 from x = 1.2: 2.8 m at the image centre.
    depth = render_depth(Camera((1.2, 3.0, 1.5), math.pi / 2), ROOM)
    np.testing.assert_allclose(depth[200:300, 250:400], 2.8, rtol=1e-5)


def test_floor_and_ceiling_depth_closed_form() -> None:
    h = 1.3
    room = Box((0.0, 0.0, 0.0), (6.0, 9.0, 3.0))
    depth = render_depth(Camera((3.0, 0.6, h)), room)
    u0 = 320
    rows = np.arange(int(CY) + 1, 480)
    expect = h * FY / (rows - CY)
    visible = expect < room.hi[1] - 0.6 - 0.05  # floor in front of the far wall
    assert visible.sum() > 100
    np.testing.assert_allclose(depth[rows[visible], u0], expect[visible], rtol=1e-4)
    rows = np.arange(0, int(CY))
    expect = (room.hi[2] - h) * FY / (CY - rows)
    visible = expect < room.hi[1] - 0.6 - 0.05
    np.testing.assert_allclose(depth[rows[visible], u0], expect[visible], rtol=1e-4)


def test_backprojected_points_lie_on_the_room_surface() -> None:
    # Any pose, empty room: every pixel's pinhole back-projection must lie on one of the six
    # planes of the room (this fails if depth were ray length instead of z-depth).
    cam = Camera((1.1, 2.3, 1.6), math.radians(37), math.radians(-21), math.radians(4))
    depth = render_depth(cam, ROOM, (), 120, 160).astype(np.float64)
    fx, fy, cx, cy = intrinsics(120, 160)
    u, v = _pixel_grid(120, 160)
    pc = np.stack([(u - cx) / fx * depth, (v - cy) / fy * depth, depth], -1)
    pw = pc @ cam.rotation().T + np.asarray(cam.position)
    lo, hi = np.asarray(ROOM.lo), np.asarray(ROOM.hi)
    assert np.all(pw > lo - 1e-4) and np.all(pw < hi + 1e-4)
    gap = np.minimum(np.abs(pw - lo), np.abs(pw - hi)).min(-1)
    assert gap.max() < 1e-4


def test_box_occludes_wall_inside_its_projection() -> None:
    x0, y0, z0 = 2.0, 1.5, 1.5
    box = Box((1.5, 3.0, 1.0), (2.5, 3.5, 2.0))  # front face 1.5 m ahead
    depth = render_depth(Camera((x0, y0, z0)), ROOM, [box])
    front = box.lo[1] - y0
    u_lo, u_hi = CX + FX * (box.lo[0] - x0) / front, CX + FX * (box.hi[0] - x0) / front
    v_lo, v_hi = CY + FY * (z0 - box.hi[2]) / front, CY + FY * (z0 - box.lo[2]) / front
    u, v = _pixel_grid()
    inside = (u > u_lo + 1) & (u < u_hi - 1) & (v > v_lo + 1) & (v < v_hi - 1)
    ring = (u > u_lo - 6) & (u < u_hi + 6) & (v > v_lo - 6) & (v < v_hi + 6)
    ring &= ~((u > u_lo - 2) & (u < u_hi + 2) & (v > v_lo - 2) & (v < v_hi + 2))
    np.testing.assert_allclose(depth[inside], front, rtol=1e-5)
    assert depth[ring].min() > 4.0  # the far wall around it, 4.5 m
    empty = render_depth(Camera((x0, y0, z0)), ROOM)
    assert np.array_equal(
        depth[~ring & ~inside & (np.abs(u - 320) > 200)],
        empty[~ring & ~inside & (np.abs(u - 320) > 200)],
    )


def test_nearest_hit_wins_regardless_of_order() -> None:
    cam = Camera((2.0, 1.0, 1.5))
    near = Box((1.8, 2.5, 1.3), (2.2, 2.7, 1.7))
    far = Box((1.0, 4.0, 0.5), (3.0, 4.5, 2.5))
    d1 = render_depth(cam, ROOM, [near, far], 60, 80)
    d2 = render_depth(cam, ROOM, [far, near], 60, 80)
    assert np.array_equal(d1, d2)
    assert d1.min() == pytest.approx(1.5, rel=1e-5)
    assert np.isclose(d1, 3.0, rtol=1e-5).sum() > 50  # far box visible around the near one


def test_hit_labels_and_axes() -> None:
    box = Box((1.5, 3.0, 1.0), (2.5, 3.5, 2.0))
    hits = cast_rays(Camera((2.0, 1.5, 1.5)), ROOM, [box], 60, 80)
    assert hits.label[30, 40] == 1 and hits.axis[30, 40] == 1  # box front face, normal -y
    assert hits.label[59, 40] == 0 and hits.axis[59, 40] == 2  # floor
    assert hits.label[30, 2] == 0 and hits.axis[30, 2] == 0  # side wall x = 0


def _reference_depth(cam: Camera, room: Box, boxes: list[Box], height: int, width: int):
    """Brute force float64 slab test of every ray against every box (no culling)."""
    fx, fy, cx, cy = intrinsics(height, width)
    u, v = _pixel_grid(height, width)
    rays = np.stack([(u - cx) / fx, (v - cy) / fy, np.ones_like(u)], -1) @ cam.rotation().T
    o = np.asarray(cam.position)
    with np.errstate(divide="ignore", invalid="ignore"):
        t_lo, t_hi = (np.asarray(room.lo) - o) / rays, (np.asarray(room.hi) - o) / rays
        best = np.maximum(t_lo, t_hi).min(-1)
        for b in boxes:
            t_lo, t_hi = (np.asarray(b.lo) - o) / rays, (np.asarray(b.hi) - o) / rays
            near = np.minimum(t_lo, t_hi).max(-1)
            far = np.maximum(t_lo, t_hi).min(-1)
            best = np.where((near <= far) & (near > 0) & (near < best), near, best)
    return best


def test_matches_brute_force_reference() -> None:
    # Includes a long box that reaches behind the camera (its projection is unbounded).
    cam = Camera((2.0, 1.5, 1.5), math.radians(-30), math.radians(-10), math.radians(3))
    side = Box((0.3, 0.2, 0.0), (1.2, 5.0, 0.8))
    cases = [(cam, ROOM, [side])]
    for seed in range(8):
        scene = sample_scene(seed)
        cases.append((scene.camera, scene.room, scene.boxes))
    rng = np.random.default_rng(1)  # boxes around random poses, many straddling the camera plane
    for _ in range(250):
        yaw, pitch, roll = rng.uniform(-3.2, 3.2), rng.uniform(-0.4, 0.1), rng.uniform(-0.1, 0.1)
        cam = Camera((2.0, 3.0, 1.5), yaw, pitch, roll)
        boxes = []
        for _ in range(3):
            centre, half = (
                np.asarray(cam.position) + rng.uniform(-1.2, 1.2, 3),
                rng.uniform(0.05, 0.8, 3),
            )
            lo = np.maximum(centre - half, 0.01)
            hi = np.minimum(centre + half, np.asarray(ROOM.hi) - 0.01)
            if not (np.all(lo < cam.position) and np.all(hi > cam.position)):
                boxes.append(Box(tuple(lo), tuple(hi)))
        cases.append((cam, ROOM, boxes))
    for cam, room, boxes in cases:
        got = render_depth(cam, room, boxes, 40, 50)
        np.testing.assert_allclose(got, _reference_depth(cam, room, boxes, 40, 50), rtol=1e-4)


def test_resolution_consistency() -> None:
    for seed in (0, 5):
        _, full = render_scene(seed, 480, 640)
        _, half = render_scene(seed, 240, 320)
        block = full.reshape(240, 2, 320, 2).mean(axis=(1, 3))
        rel = np.abs(half - block) / block
        assert np.median(rel) < 0.02 and rel.mean() < 0.02


# --- shading ------------------------------------------------------------------------------------


def _grey(kind: str = "plain", value: float = 0.5) -> Material:
    return Material(kind, np.full(3, value, np.float32), np.full(3, value, np.float32))


def _plain_scene(
    camera: Camera,
    boxes: list[Box],
    lights: list,
    room: Box | None = None,
    floor: Material | None = None,
    ambient: float = 0.05,
) -> Scene:
    """A noiseless grey room: only what a test varies is passed."""
    return Scene(
        room=room or ROOM,
        boxes=boxes,
        camera=camera,
        lights=lights,
        floor=floor or _grey(),
        ceiling=_grey(),
        walls=[_grey()] * 4,
        skirting=np.full(3, 0.5, np.float32),
        ambient=ambient,
        noise_sigma=0.0,
        exposure=1.0,
    )


def test_shading_darkens_with_distance_on_uniform_floor() -> None:
    room = Box((0.0, 0.0, 0.0), (5.0, 8.0, 3.0))
    scene = _plain_scene(
        Camera((2.5, 0.6, 1.5), 0.0, math.radians(-15)),
        [],
        [(np.array([2.5, 0.8, 2.7], np.float32), 4.0)],
        room=room,
    )
    rgb, depth = render(scene, 120, 160)
    lum = rgb.astype(np.float64).mean(-1)
    col = 80
    rows = np.arange(70, 118)  # floor, centre column, from far to near
    assert np.all(np.diff(depth[rows, col]) < 0)
    assert np.all(np.diff(lum[rows, col]) >= -1)  # nearer is never darker (up to rounding)
    assert lum[rows[-1], col] > lum[rows[0], col] + 20


def test_shading_follows_surface_orientation() -> None:
    # One grey box seen from the front and above; a lamp straight above it lights the top face
    # better than the front face, a lamp in front of it the reverse.
    box = Box((1.5, 3.0, 0.0), (2.5, 4.0, 1.0))
    cam = Camera((2.0, 1.0, 1.6), 0.0, math.radians(-20))
    hits = cast_rays(cam, ROOM, [box], 120, 160)
    front = (hits.label == 1) & (hits.axis == 1)
    top = (hits.label == 1) & (hits.axis == 2)
    assert front.sum() > 100 and top.sum() > 100
    means = []
    for lamp in ((2.0, 3.5, 2.5), (2.0, 1.5, 0.5)):
        scene = _plain_scene(
            cam, [Box(box.lo, box.hi, _grey())], [(np.array(lamp, np.float32), 3.0)]
        )
        lum = render(scene, 120, 160)[0].astype(np.float64).mean(-1)
        means.append((np.median(lum[top]), np.median(lum[front])))
    (top_a, front_a), (top_b, front_b) = means
    assert top_a > front_a + 20 and front_b > top_b + 20


def test_light_falls_off_with_distance() -> None:
    # Two equal grey boxes, front faces at 2 m and 4 m from a lamp; the far face sees the lamp
    # at a slightly better angle (cos 0.97 vs 0.89) but should still be much darker.
    near = Box((0.6, 3.0, 0.0), (1.4, 3.4, 1.0), _grey())
    far = Box((2.6, 5.0, 0.0), (3.4, 5.4, 1.0), _grey())
    cam = Camera((2.0, 0.6, 1.2), 0.0, math.radians(-10))
    scene = _plain_scene(cam, [near, far], [(np.array([2.0, 1.0, 0.5], np.float32), 3.0)])
    hits = cast_rays(cam, ROOM, scene.boxes, 120, 160)
    lum = render(scene, 120, 160)[0].astype(np.float64).mean(-1)
    faces = [(hits.label == i) & (hits.axis == 1) for i in (1, 2)]
    assert faces[0].sum() > 50 and faces[1].sum() > 50
    assert np.median(lum[faces[0]]) > np.median(lum[faces[1]]) + 30


def test_random_scenes_floor_darker_when_farther() -> None:
    corrs = []
    for seed in range(12):
        scene = sample_scene(seed)
        rgb, depth = render_scene(seed, 96, 128)
        hits = cast_rays(scene.camera, scene.room, scene.boxes, 96, 128)
        floor = (hits.label == 0) & (hits.axis == 2) & (hits.dirs[2] < 0)
        if floor.sum() > 100:
            lum = rgb.astype(np.float64).mean(-1)
            corrs.append(np.corrcoef(depth[floor], lum[floor])[0, 1])
    assert len(corrs) >= 8
    assert np.mean(corrs) < -0.15


def test_textures_follow_world_coordinates() -> None:
    # A 0.5 m checker floor under flat light, camera level at height h: row v sees the floor at
    # y = y0 + h * fy / (v - cy), so tile parity along the column is known in closed form and
    # the tiles shrink with distance exactly as perspective says.
    h, y0, s = 1.5, 0.6, 0.5
    room = Box((0.0, 0.0, 0.0), (4.5, 7.0, 3.0))
    tiles = Material("tiles", np.full(3, 0.8, np.float32), np.full(3, 0.15, np.float32), s)
    tiles.extra = {"grout": 0.5}
    scene = _plain_scene(Camera((2.2, y0, h)), [], [], room=room, floor=tiles, ambient=0.5)
    height, width, col = 480, 640, 320
    rgb, depth = render(scene, height, width)
    _, fy, _, cy = intrinsics(height, width)
    rows = np.arange(int(cy) + 2, height)
    y = y0 + h * fy / (rows - cy)
    rows, y = rows[y < 6.5], y[y < 6.5]  # floor in front of the far wall (y = 7)
    np.testing.assert_allclose(depth[rows, col], y - y0, rtol=1e-4)
    parity = np.floor(2.2 / s) + np.floor(y / s)
    parity = parity % 2
    stable = np.ones(rows.size, bool)
    for k in (1, 2, 3):  # the same tile for +-3 rows: away from blurred tile edges
        stable[k:] &= parity[k:] == parity[:-k]
        stable[:-k] &= parity[:-k] == parity[k:]
    frac = y / s - np.floor(y / s)
    keep = stable & (frac > 0.1) & (frac < 0.9)
    assert keep.sum() > 60 and len(set(parity[keep])) == 2
    lum = rgb[rows, col].astype(np.float64).mean(-1)[keep]
    bright = lum > (lum.max() + lum.min()) / 2
    assert np.mean(bright == (parity[keep] == 0)) > 0.95


# --- the dataset sequence -----------------------------------------------------------------------


def test_synthetic_scenes_sequence() -> None:
    scenes = SyntheticScenes(3, seed=2, height=32, width=40)
    assert len(scenes) == 3
    rgb, depth = scenes[1]
    ref_rgb, ref_depth = render_scene(2 * 1_000_003 + 1, 32, 40)
    assert np.array_equal(rgb, ref_rgb) and np.array_equal(depth, ref_depth)
    assert np.array_equal(scenes[-1][1], scenes[2][1])
    assert np.array_equal(scenes[-3][1], render_scene(2 * 1_000_003, 32, 40)[1])
    for bad in (3, -4):
        with pytest.raises(IndexError):
            scenes[bad]
    assert len(list(scenes)) == 3
    assert not np.array_equal(scenes[0][1], SyntheticScenes(3, seed=3, height=32, width=40)[0][1])
