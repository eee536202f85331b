"""Cameras and point clouds: geometry against the generator's exact depth, files read by a
reader we did not write (plyfile, PIL, OpenCV's FileStorage), intrinsics from ROS, OpenCV and
KITTI files, the focal-length correction, and the training camera carried through the files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from cli import app
from densedepth.camera import (
    NYU_KINECT,
    Intrinsics,
    backproject,
    focal_scale,
    parse_intrinsics,
    read_camera_file,
    write_ply,
)
from densedepth.data.synthetic import Box, Camera, intrinsics, render_depth
from densedepth.util.errors import DataError
from densedepth.util.onnx_io import read_metadata

plyfile = pytest.importorskip("plyfile", reason="plyfile (the dev extra) reads the PLY files")
cli = CliRunner()


def fit_plane(points: np.ndarray) -> tuple[np.ndarray, float]:
    """Least-squares plane n . p = d (unit n, d >= 0) through ``points`` (N, 3)."""
    centre = points.mean(axis=0)
    _, _, vt = np.linalg.svd(points - centre, full_matrices=False)
    normal = vt[-1]
    d = float(normal @ centre)
    return (normal, d) if d >= 0 else (-normal, -d)


def test_the_floor_back_projects_to_the_plane_the_generator_placed() -> None:
    """An empty room seen by a camera 1.4 m above the floor, pitched down and rolled: the
    floor pixels of the generator's exact z-depth back-project (with the intrinsics it
    rendered with) to a plane whose normal is the world's up in the camera frame and whose
    distance is the camera's height. Bounds: float32 rays and depth (about 1e-6 m per point;
    measured 3e-6 m and 1e-4 degrees), far below what a pixel's error in cx or fx would cost
    (centimetres, a quarter of a degree)."""
    h, w = 48, 64
    room = Box((0.0, 0.0, 0.0), (4.0, 5.0, 2.8))
    cam = Camera((2.0, 1.0, 1.4), yaw=0.2, pitch=-0.5, roll=0.1)
    depth = render_depth(cam, room, (), h, w)
    intr = Intrinsics(*intrinsics(h, w), w, h)
    points, _ = backproject(depth, intr)
    rot = cam.rotation()  # columns: right, down, forward in the world
    world = points.astype(np.float64) @ rot.T + np.asarray(cam.position)
    floor = np.abs(world[:, 2]) < 1e-3  # (the points' own heights pick the floor's pixels)
    assert floor.sum() > 200
    normal, distance = fit_plane(points[floor].astype(np.float64))
    up_in_camera = rot.T @ np.array([0.0, 0.0, 1.0])
    assert distance == pytest.approx(1.4, abs=1e-4)
    angle = math.degrees(math.acos(min(1.0, abs(float(normal @ up_in_camera)))))
    assert angle < 1e-2
    assert float(normal @ up_in_camera) < 0  # the camera sees the floor below: normal towards it


def test_points_follow_the_pinhole_formula_and_keep_their_pixels_colour() -> None:
    """x = (u - cx) z / fx, y = (v - cy) z / fy, z = depth[v, u] on every stride-th pixel;
    missing depth (0, NaN) and pixels outside ``valid`` are dropped; colours are the pixel's."""
    rng = np.random.default_rng(0)
    depth = rng.uniform(0.5, 9.0, (12, 16)).astype(np.float32)
    depth[0, 0], depth[2, 4] = 0.0, np.nan
    valid = np.ones_like(depth, bool)
    valid[4, 6] = False
    rgb = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
    intr = Intrinsics(20.0, 22.0, 7.3, 5.6, 16, 12)
    points, colours = backproject(depth, intr, rgb, stride=2, valid=valid)
    expect = []
    for v in range(0, 12, 2):
        for u in range(0, 16, 2):
            z = float(depth[v, u])
            if np.isfinite(z) and z > 0 and valid[v, u]:
                expect.append(((u - 7.3) * z / 20.0, (v - 5.6) * z / 22.0, z, *rgb[v, u]))
    expect_a = np.array(expect)
    assert len(points) == len(expect) == 6 * 8 - 3
    np.testing.assert_allclose(points, expect_a[:, :3], rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(colours, expect_a[:, 3:].astype(np.uint8))


def test_intrinsics_scale_keeps_pixel_centres_and_focal_scale_ignores_resolution() -> None:
    """The generator's own intrinsics at every size are the Kinect's scaled; a 2x downsample
    maps u to (u - 0.5) / 2; the same camera at another resolution has focal scale 1, one
    with twice the focal length 2."""
    for h, w in ((480, 640), (240, 320), (64, 96), (37, 50)):
        s = NYU_KINECT.scaled(w, h)
        assert (s.fx, s.fy, s.cx, s.cy) == pytest.approx(intrinsics(h, w))
    half = NYU_KINECT.scaled(320, 240)
    assert half.cx == pytest.approx((NYU_KINECT.cx - 0.5) / 2)
    assert focal_scale(NYU_KINECT.scaled(96, 64), NYU_KINECT) == pytest.approx(1.0)
    tele = Intrinsics(2 * NYU_KINECT.fx, 2 * NYU_KINECT.fy, 320, 240, 640, 480)
    assert focal_scale(tele.scaled(1280, 960), NYU_KINECT) == pytest.approx(2.0)
    assert NYU_KINECT.fov_deg()[0] == pytest.approx(2 * math.degrees(math.atan(320 / 518.857901)))


def test_the_ply_is_binary_little_endian_and_read_back_by_plyfile(tmp_path: Path) -> None:
    """Header (format, comments, properties) and every value, through plyfile."""
    pts = np.array([[0.5, -1.25, 3.0], [1e-3, 2.0, 9.5]], np.float32)
    rgb = np.array([[255, 0, 7], [1, 2, 3]], np.uint8)
    path = write_ply(tmp_path / "c.ply", pts, rgb, ["densedepth_units metres"])
    data = plyfile.PlyData.read(str(path))
    assert data.header.startswith("ply\nformat binary_little_endian 1.0")
    assert "densedepth_units metres" in data.comments
    v = data["vertex"]
    assert [p.name for p in v.properties] == ["x", "y", "z", "red", "green", "blue"]
    np.testing.assert_array_equal(np.stack([v["x"], v["y"], v["z"]], 1), pts)
    np.testing.assert_array_equal(np.stack([v["red"], v["green"], v["blue"]], 1), rgb)
    with pytest.raises(DataError, match="single lines"):
        write_ply(tmp_path / "bad.ply", pts, rgb, ["two\nlines"])
    assert not (tmp_path / "bad.ply").exists()


K = (518.857901, 519.469611, 325.582449, 253.736166)


def ros_yaml(tmp_path: Path) -> Path:
    """A camera_calibration_parsers file (its key order and {rows, cols, data} matrices)."""
    fx, fy, cx, cy = K
    text = f"""image_width: 640
image_height: 480
camera_name: kinect_rgb
camera_matrix:
  rows: 3
  cols: 3
  data: [{fx}, 0, {cx}, 0, {fy}, {cy}, 0, 0, 1]
distortion_model: plumb_bob
distortion_coefficients:
  rows: 1
  cols: 5
  data: [0.2079, -0.5861, 0.0007, 0.0010, 0.4986]
rectification_matrix:
  rows: 3
  cols: 3
  data: [1, 0, 0, 0, 1, 0, 0, 0, 1]
projection_matrix:
  rows: 3
  cols: 4
  data: [{fx}, 0, {cx}, 0, 0, {fy}, {cy}, 0, 0, 0, 1, 0]
"""
    path = tmp_path / "ost.yaml"
    path.write_text(text)
    return path


def ros2_echo(tmp_path: Path) -> Path:
    """``ros2 topic echo`` of a CameraInfo message: lowercase k, block lists, width/height."""
    fx, fy, cx, cy = K
    ks = "\n".join(f"- {v}" for v in (fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0))
    text = f"""header:
  stamp:
    sec: 1683043705
    nanosec: 486059354
  frame_id: camera_optical_frame
height: 480
width: 640
distortion_model: plumb_bob
d:
- 0.0
k:
{ks}
"""
    path = tmp_path / "echo.yaml"
    path.write_text(text)
    return path


def opencv_files(tmp_path: Path) -> list[Path]:
    """OpenCV's calibration sample output written by cv::FileStorage itself (YAML and XML,
    camera_matrix / image_width), and the older sample's file as it shipped (``%YAML:1.0``,
    Camera_Matrix / image_Width, three-digit exponents), by hand."""
    fx, fy, cx, cy = K
    mat = np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]], np.float64)
    out = []
    for name in ("out_camera_data.yml", "out_camera_data.xml"):
        fs = cv2.FileStorage(str(tmp_path / name), cv2.FILE_STORAGE_WRITE)
        fs.write("nr_of_frames", 25)
        fs.write("image_width", 640)
        fs.write("image_height", 480)
        fs.write("camera_matrix", mat)
        fs.write("distortion_coefficients", np.zeros((5, 1)))
        fs.release()
        out.append(tmp_path / name)
    e = [f"{v:.16e}".replace("e+0", "e+00") for v in (fx, cx, fy, cy)]
    old = tmp_path / "old_sample.yml"
    old.write_text(
        f'%YAML:1.0\ncalibration_Time: "08/19/11 20:44:38"\nnrOfFrames: 8\n'
        f"image_Width: 640\nimage_Height: 480\nCamera_Matrix: !!opencv-matrix\n   rows: 3\n"
        f"   cols: 3\n   dt: d\n   data: [ {e[0]}, 0., {e[1]}, 0.,\n       {e[2]}, {e[3]}, "
        f"0., 0., 1. ]\n"
    )
    return [*out, old]


def test_ros_opencv_and_kitti_files_parse_to_the_same_camera(tmp_path: Path) -> None:
    """The ROS calibration YAML, a ROS 2 echo, OpenCV's YAML / XML (new and old key names)
    and the --intrinsics text give one K and size; KITTI's calib file gives P_rect_02."""
    files = [ros_yaml(tmp_path), ros2_echo(tmp_path), *opencv_files(tmp_path)]
    assert (tmp_path / "out_camera_data.yml").read_text().startswith("%YAML")
    assert "e+002" in (tmp_path / "old_sample.yml").read_text()
    assert "opencv-matrix" in (tmp_path / "out_camera_data.xml").read_text()
    parsed = [read_camera_file(f) for f in files]
    parsed.append(parse_intrinsics(",".join(map(str, K)) + "@640x480"))
    for cam in parsed:
        assert (cam.fx, cam.fy, cam.cx, cam.cy) == pytest.approx(K, abs=1e-9)
        assert (cam.width, cam.height) == (640, 480)
    kitti = tmp_path / "2011_09_26" / "calib_cam_to_cam.txt"
    kitti.parent.mkdir()
    kitti.write_text(
        "calib_time: 09-Jan-2012 13:57:47\ncorner_dist: 9.950000e-02\n"
        "S_rect_02: 1.242000e+03 3.750000e+02\n"
        "P_rect_02: 7.215377e+02 0.000000e+00 6.095593e+02 4.485728e+01 0.000000e+00 "
        "7.215377e+02 1.728540e+02 2.163791e-01 0.000000e+00 0.000000e+00 1.000000e+00 "
        "2.745884e-03\n"
    )
    cam = read_camera_file(kitti)
    assert (cam.fx, cam.fy, cam.cx, cam.cy, cam.width, cam.height) == pytest.approx(
        (721.5377, 721.5377, 609.5593, 172.854, 1242, 375))  # fmt: skip
    assert cam.source == "KITTI 2011_09_26 P_rect_02"


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("525,525,319.5", "give fx,fy,cx,cy"),
        ("a,b,c,d", "give fx,fy,cx,cy"),
        ("525,525,319.5,239.5@640", "give fx,fy,cx,cy"),
        ("0,525,319.5,239.5", "must be positive"),
        ("525,525,nan,239.5", "must be positive and every value finite"),
    ],
)
def test_bad_intrinsics_text_is_one_line(text: str, match: str) -> None:
    with pytest.raises(DataError, match=match):
        parse_intrinsics(text)


def test_bad_camera_files_are_one_line(tmp_path: Path) -> None:
    """No matrix, a 3x4 matrix, not a pinhole K, not YAML, missing."""
    no_k = tmp_path / "no_k.yaml"
    no_k.write_text("image_width: 640\nimage_height: 480\n")
    wide = tmp_path / "wide.yaml"
    wide.write_text("camera_matrix:\n  rows: 3\n  cols: 4\n  data: [1,0,0,0,0,1,0,0,0,0,1,0]\n")
    skew = tmp_path / "skew.yaml"
    skew.write_text("K: [500, 3, 320, 0, 500, 240, 0, 0, 1]\n")
    junk = tmp_path / "junk.yaml"
    junk.write_bytes(b"\x00\x01{{{ not: [yaml")
    for path, match in ((no_k, "no camera matrix"), (wide, "not 9"), (skew, "not a pinhole"),
                        (junk, "not a YAML file"),
                        (tmp_path / "absent.yaml", "does not exist")):  # fmt: skip
        with pytest.raises(DataError, match=match) as err:
            read_camera_file(path)
        assert "\n" not in str(err.value)


def tiny_image(tmp_path: Path, h: int = 48, w: int = 80) -> Path:
    """A synthetic scene as a PNG (another size than the model's 64x64 input)."""
    from densedepth.data.synthetic import render_scene

    rgb, _ = render_scene(3, h, w)
    path = tmp_path / "img" / "scene.png"
    path.parent.mkdir(parents=True)
    cv2.imwrite(str(path), rgb[..., ::-1])
    return path


def read_ply_points(path: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    data = plyfile.PlyData.read(str(path))
    v = data["vertex"]
    xyz = np.stack([v["x"], v["y"], v["z"]], 1).astype(np.float64)
    rgb = np.stack([v["red"], v["green"], v["blue"]], 1)
    return xyz, rgb, list(data.comments)


def test_predict_pointcloud_matches_its_depth_png_pixel_by_pixel(
    trained_tiny: dict, tmp_path: Path
) -> None:
    """predict --pointcloud --pointcloud-stride 3 --intrinsics ...@WxH of a 48x80 image:
    every point projects back onto a stride pixel (u = x fx / z + cx integral), its z equals
    the depth PNG there to the PNG's 0.5 mm rounding, its colour is the image's; exactly the
    unclamped stride pixels are there; the PLY's comments and the PNG's text chunks record
    the intrinsics (scaled to the image) and camera.json says the same."""
    image = tiny_image(tmp_path)
    out = tmp_path / "pred"
    given = "104,104,39.5,23.5@160x96"  # half-size image: scaled by 0.5 with pixel centres
    args = ["predict", str(trained_tiny["onnx"]), str(image), "--out", str(out),
            "--pointcloud", "--pointcloud-stride", "3", "--intrinsics", given]  # fmt: skip
    result = cli.invoke(app, args)
    assert result.exit_code == 0, result.output
    fx, fy, cx, cy = 52.0, 52.0, (39.5 + 0.5) * 0.5 - 0.5, (23.5 + 0.5) * 0.5 - 0.5
    xyz, colours, comments = read_ply_points(out / "scene.ply")
    png = Image.open(out / "scene_depth.png")
    depth_mm = np.asarray(png).astype(np.float64)
    rgb = np.asarray(Image.open(image).convert("RGB"))
    u = xyz[:, 0] * fx / xyz[:, 2] + cx
    v = xyz[:, 1] * fy / xyz[:, 2] + cy
    ui, vi = np.rint(u).astype(int), np.rint(v).astype(int)
    assert np.abs(u - ui).max() < 1e-3 and np.abs(v - vi).max() < 1e-3
    assert (ui % 3 == 0).all() and (vi % 3 == 0).all()
    assert np.abs(xyz[:, 2] * 1000 - depth_mm[vi, ui]).max() <= 0.5 + 1e-3
    np.testing.assert_array_equal(colours, rgb[vi, ui])
    lo, hi = 100.0, 10000.0  # the model's 0.1..10 m, in the PNG's millimetres
    grid = depth_mm[::3, ::3]
    inside, touching = (
        int(((grid > lo) & (grid < hi)).sum()),
        int(((grid >= lo) & (grid <= hi)).sum()),
    )
    assert inside <= len(xyz) <= touching  # (a depth within 0.5 mm of a bound rounds onto it)
    assert len(set(zip(ui.tolist(), vi.tolist(), strict=True))) == len(xyz)
    record = json.loads((out / "camera.json").read_text())
    scaled = record["images"]["scene"]["intrinsics"]
    assert (scaled["fx"], scaled["cx"], scaled["width"], scaled["height"]) == pytest.approx(
        (fx, cx, 80, 48))  # fmt: skip
    assert record["images"]["scene"]["points"] == len(xyz)
    assert any(c.startswith("densedepth_intrinsics fx 52.00 fy 52.00") for c in comments)
    assert png.text["densedepth_intrinsics"].startswith("fx 52.00 fy 52.00")
    assert "metres" in png.text["densedepth_units"]


def test_focal_scale_auto_rescales_the_depth_and_an_unasked_difference_is_warned(
    trained_tiny: dict, tmp_path: Path
) -> None:
    """A camera with 1.5x the training camera's relative focal length: without a correction
    one warning line names the factor; --focal-scale auto multiplies every depth by it (the
    PNGs agree to their 1 mm rounding); a factor given by hand is applied as given."""
    image = tiny_image(tmp_path)
    train = NYU_KINECT.scaled(64, 64)
    cam = f"{1.5 * train.fx},{1.5 * train.fy},{train.cx},{train.cy}@64x64"
    runs = {}
    for name, extra in (("none", []), ("auto", ["--focal-scale", "auto"]),
                        ("hand", ["--focal-scale", "0.5"])):  # fmt: skip
        out = tmp_path / name
        result = cli.invoke(app, ["predict", str(trained_tiny["onnx"]), str(image), "--out",
                                  str(out), "--intrinsics", cam, *extra])  # fmt: skip
        assert result.exit_code == 0, result.output
        runs[name] = (result.output, np.asarray(Image.open(out / "scene_depth.png"), np.float64))
    assert "1.500x the training camera's" in runs["none"][0]
    assert "warning" not in runs["auto"][0]
    base = runs["none"][1]
    assert np.abs(runs["auto"][1] - 1.5 * base).max() <= 1.5 * 0.5 + 0.5 + 1e-6
    assert np.abs(runs["hand"][1] - 0.5 * base).max() <= 0.5 * 0.5 + 0.5 + 1e-6
    record = json.loads((tmp_path / "auto" / "camera.json").read_text())
    assert record["images"]["scene"]["focal_scale_applied"] == pytest.approx(1.5)


def test_the_training_camera_travels_from_the_run_to_every_file(trained_tiny: dict) -> None:
    """fit records the synthetic data's camera (the Kinect's at the render size) in the
    checkpoint; export writes it into the ONNX; the runner's info and `info MODEL` show it."""
    import torch

    from engines import load_runner

    ckpt = torch.load(trained_tiny["ckpt"], map_location="cpu", weights_only=True)
    recorded = ckpt["config"]["training_camera"]
    expected = NYU_KINECT.scaled(64, 64)
    assert (recorded["fx"], recorded["cy"], recorded["width"]) == pytest.approx(
        (expected.fx, expected.cy, 64))  # fmt: skip
    assert read_metadata(trained_tiny["onnx"])["training_camera"] == recorded
    with load_runner(trained_tiny["onnx"], device="cpu") as runner:
        assert runner.info.camera == recorded
    shown = cli.invoke(app, ["info", str(trained_tiny["onnx"])])
    assert shown.exit_code == 0 and "training camera: fx 51.89" in shown.output, shown.output


def test_camera_inputs_fail_in_one_line(trained_tiny: dict, tmp_path: Path) -> None:
    """Both --intrinsics and --camera-info, a bad --focal-scale, a missing camera file."""
    image = tiny_image(tmp_path)
    model = str(trained_tiny["onnx"])
    cam = ros_yaml(tmp_path)
    cases = (
        (["--intrinsics", "1,1,1,1", "--camera-info", str(cam)], "pass one"),
        (["--focal-scale", "wide"], "choose none, auto or a positive factor"),
        (["--focal-scale", "-2"], "choose none, auto or a positive factor"),
        (["--camera-info", str(tmp_path / "nope.yaml")], "does not exist"),
    )
    for extra, match in cases:
        out = tmp_path / f"o{len(extra)}{extra[1][:2]}"
        result = cli.invoke(app, ["predict", model, str(image), "--out", str(out), *extra])
        errors = [ln for ln in result.output.splitlines() if ln.startswith("error:")]
        assert result.exit_code == 1 and len(errors) == 1 and match in errors[0], result.output
        assert not out.exists()


def test_kitti_data_carries_the_calibration_of_its_drive_date(tmp_path: Path) -> None:
    """synth --format kitti writes the date's calib_cam_to_cam.txt with the camera it rendered
    by; the reader takes the dataset's camera from it (per date, too); without the file it
    says it fell back to 2011_09_26's published P_rect_02."""
    from densedepth.camera import camera_record
    from densedepth.data.readers import open_dataset
    from densedepth.data.synthetic_street import kitti_intrinsics
    from densedepth.data.writers import write_synthetic

    root = write_synthetic(tmp_path / "kitti", "kitti", 2, 1, 0, 96, 320)
    ds = open_dataset(str(root), "train")
    cam = ds.camera
    assert (cam.fx, cam.fy, cam.cx, cam.cy) == pytest.approx(kitti_intrinsics(96, 320), rel=1e-6)
    assert (cam.width, cam.height, cam.source) == (320, 96, "KITTI 2011_09_26 P_rect_02")
    assert set(camera_record(ds)["per_date"]) == {"2011_09_26"}
    (root / "2011_09_26" / "calib_cam_to_cam.txt").unlink()
    fallback = open_dataset(str(root), "train").camera
    assert fallback.fx == 721.5377 and "no DATE/calib_cam_to_cam.txt" in fallback.source


def test_a_camera_the_model_does_not_record_is_asked_for_in_one_line() -> None:
    """A point cloud or --focal-scale auto for a model without a training camera."""
    from densedepth.camera import plan_camera

    with pytest.raises(DataError, match="pass --intrinsics fx,fy,cx,cy or --camera-info"):
        plan_camera(None, None, "none", need=True)
    with pytest.raises(DataError, match="records none"):
        plan_camera(None, parse_intrinsics("500,500,320,240@640x480"), "auto")
    plan = plan_camera(None, parse_intrinsics("500,500,320,240@640x480"), "none", need=True)
    assert plan.for_image(320, 240).intrinsics.fx == pytest.approx(250.0)
