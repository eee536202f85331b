"""Cameras: pinhole intrinsics, their files, the training camera, point clouds and focal scale.

Intrinsics are ``fx, fy, cx, cy`` in pixels of an image ``width`` x ``height``, OpenCV's
convention: pixel centres at integer coordinates, x right, y down, z forward. Scaling to
another image size keeps pixel centres: ``fx * sx`` and ``(cx + 0.5) * sx - 0.5`` (the rule
the synthetic generator renders with), so the depth map at half resolution has its own.

A DenseDepth model predicts metric depth as if the image came from the camera it was trained
on (NYU: the Kinect). Fed through the network's resize, what the model sees of a camera is its
focal length relative to the image (``fx / width``, ``fy / height``: the field of view), so the
first-order correction for another camera is ``focal_scale = f_deploy / f_train`` on those
relative focals (their geometric mean over x and y): objects look ``focal_scale`` times larger
to the model than the training camera would have shown them, so it sees them that much nearer.

Files read: ROS camera_info YAML (PyYAML)
(``camera_calibration_parsers``' ``camera_matrix`` {rows, cols, data} with ``image_width`` /
``image_height``; a CameraInfo message's ``K`` (ROS 1) or ``k`` (ROS 2) with ``width`` /
``height``), OpenCV calibration YAML / XML (its calibration sample's ``camera_matrix``, or the
older sample's ``Camera_Matrix`` and ``image_Width``, as an opencv-matrix; ``imageSize``;
through OpenCV's FileStorage), and KITTI raw's ``calib_cam_to_cam.txt`` (``P_rect_02`` at
``S_rect_02``). The point cloud is a binary little-endian PLY: float x y z in metres in the
camera frame, uchar red green blue.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from densedepth.util.errors import DataError
from densedepth.util.outputs import atomic_path

KINECT_INTRINSICS = (518.857901, 519.469611, 325.582449, 253.736166)  # at 640x480
KITTI_P_RECT_02 = (721.5377, 721.5377, 609.5593, 172.854)  # 2011_09_26, at 1242x375
FOV_WARNING = 0.10  # |focal_scale - 1| above which an uncorrected run is warned


@dataclass(frozen=True)
class Intrinsics:
    """A pinhole camera: focal lengths and principal point in pixels of ``width`` x ``height``
    (0 x 0: of whatever image it is used with), and where the figures came from."""

    fx: float
    fy: float
    cx: float
    cy: float
    width: int = 0
    height: int = 0
    source: str = ""

    @property
    def sized(self) -> bool:
        """Whether the image size the figures belong to is known."""
        return self.width > 0 and self.height > 0

    def scaled(self, width: int, height: int) -> Intrinsics:
        """The same camera for an image resized to ``width`` x ``height`` (pixel centres
        kept); an unsized one is taken as given for that size."""
        if width <= 0 or height <= 0:
            raise DataError(f"image size {width}x{height} is not positive")
        if not self.sized:
            return replace(self, width=int(width), height=int(height))
        sx, sy = width / self.width, height / self.height
        return replace(self, fx=self.fx * sx, fy=self.fy * sy, cx=(self.cx + 0.5) * sx - 0.5,
                       cy=(self.cy + 0.5) * sy - 0.5, width=int(width),
                       height=int(height))  # fmt: skip

    def fov_deg(self) -> tuple[float, float]:
        """Horizontal and vertical field of view in degrees (a sized camera)."""
        return (math.degrees(2 * math.atan(self.width / (2 * self.fx))),
                math.degrees(2 * math.atan(self.height / (2 * self.fy))))  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (what checkpoints, ONNX metadata and sidecars record)."""
        return asdict(self)

    def text(self) -> str:
        """``fx 518.86 fy 519.47 cx 325.58 cy 253.74 at 640x480 (SOURCE)``."""
        size = f" at {self.width}x{self.height}" if self.sized else ""
        where = f" ({self.source})" if self.source else ""
        return (f"fx {self.fx:.2f} fy {self.fy:.2f} cx {self.cx:.2f} cy {self.cy:.2f}"
                f"{size}{where}")  # fmt: skip


NYU_KINECT = Intrinsics(*KINECT_INTRINSICS, 640, 480, "NYU Depth v2 Kinect RGB, camera_params.m")
KITTI_IMAGE_02 = Intrinsics(*KITTI_P_RECT_02, 1242, 375, "KITTI 2011_09_26 P_rect_02")


def intrinsics_from_dict(raw: Any) -> Intrinsics | None:
    """The Intrinsics a metadata dict records (``to_dict``'s form), None for anything else."""
    if not isinstance(raw, dict):
        return None
    try:
        return Intrinsics(float(raw["fx"]), float(raw["fy"]), float(raw["cx"]), float(raw["cy"]),
                          int(raw.get("width", 0)), int(raw.get("height", 0)),
                          str(raw.get("source", "")))  # fmt: skip
    except (KeyError, TypeError, ValueError):
        return None


def camera_record(dataset: Any) -> dict[str, Any] | None:
    """What a checkpoint records of the camera a dataset's images come from (a Subset's
    base's): its intrinsics, with each drive date's under ``per_date`` where a dataset has
    several (KITTI); None when unknown."""
    base = getattr(dataset, "base", dataset)
    camera = getattr(dataset, "camera", None) or getattr(base, "camera", None)
    if camera is None:
        return None
    record = camera.to_dict()
    per_date = getattr(base, "cameras", None)
    if per_date:
        record["per_date"] = {date: cam.to_dict() for date, cam in per_date.items()}
    return record


def camera_line(camera: Intrinsics | None) -> str:
    """``camera: fx ... at WxH (SOURCE), field of view 63.6 x 49.6 degrees`` or why none."""
    if camera is None:
        return ("camera: not known (give yours to predict / bench --camera with --intrinsics "
                "or --camera-info)")  # fmt: skip
    fov = ""
    if camera.sized:
        h, v = camera.fov_deg()
        fov = f", field of view {h:.1f} x {v:.1f} degrees"
    return f"camera: {camera.text()}{fov}"


def checked(intr: Intrinsics, what: str) -> Intrinsics:
    """``intr`` when its focal lengths are positive and finite (one line naming ``what``)."""
    values = (intr.fx, intr.fy, intr.cx, intr.cy)
    if not all(math.isfinite(v) for v in values) or intr.fx <= 0 or intr.fy <= 0:
        raise DataError(f"{what}: fx and fy must be positive and every value finite, got "
                        f"{', '.join(f'{v:g}' for v in values)}")  # fmt: skip
    if intr.width < 0 or intr.height < 0:
        raise DataError(f"{what}: image size {intr.width}x{intr.height} is negative")
    return intr


_INTRINSICS_TEXT = re.compile(r"^\s*([^@]+?)\s*(?:@\s*(\d+)\s*[xX]\s*(\d+)\s*)?$")


def parse_intrinsics(text: str) -> Intrinsics:
    """``fx,fy,cx,cy[@WxH]`` (pixels; without ``@WxH``: of the image it is used with)."""
    usage = "give fx,fy,cx,cy in pixels, optionally @WxH (e.g. 525,525,319.5,239.5@640x480)"
    m = _INTRINSICS_TEXT.match(text)
    parts = m.group(1).split(",") if m else []
    try:
        values = [float(p) for p in parts]
    except ValueError:
        values = []
    if m is None or len(values) != 4:
        raise DataError(f"--intrinsics {text!r}: {usage}")
    width, height = (int(m.group(2)), int(m.group(3))) if m.group(2) else (0, 0)
    return checked(Intrinsics(*values, width, height, "--intrinsics"), f"--intrinsics {text!r}")


def read_camera_file(path: str | os.PathLike[str]) -> Intrinsics:
    """K and the image size of a ROS camera_info YAML, an OpenCV calibration YAML / XML or a
    KITTI ``calib_cam_to_cam.txt`` (camera 02), one clear line for anything else."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"camera file {p} does not exist or is not a file")
    try:
        head = p.read_text(errors="replace")[:65536]
    except OSError as exc:
        raise DataError(f"camera file {p}: cannot read ({exc.strerror})") from None
    if "P_rect_02:" in head or "S_rect_02:" in head:
        return read_kitti_calib(p)
    return _read_filestorage(p)


# ROS calibration files and OpenCV's calibration sample (camera_matrix; its older version
# Camera_Matrix, image_Width), the ROS 1 / ROS 2 CameraInfo message (K / k, width), others' K
MATRIX_KEYS = ("camera_matrix", "Camera_Matrix", "cameraMatrix", "K", "k")
SIZE_KEYS = (("image_width", "image_height"), ("image_Width", "image_Height"), ("width", "height"))
CAMERA_FILES = "give a ROS camera_info YAML, an OpenCV calibration file or calib_cam_to_cam.txt"


def _read_filestorage(p: Path) -> Intrinsics:
    """K and size of a ROS YAML (PyYAML: ROS files are plain YAML) or an OpenCV FileStorage
    YAML / XML (OpenCV's own reader: ``%YAML:1.0`` and ``!!opencv-matrix`` are not plain)."""
    what = f"camera file {p}"
    text = p.read_text(errors="replace")
    opencv = p.suffix.lower() == ".xml" or text.lstrip().startswith(("%YAML", "<?xml")) or (
        "opencv-matrix" in text)  # fmt: skip
    found = _opencv_fields(p, what) if opencv else _yaml_fields(text, what)
    k = next((found[key] for key in MATRIX_KEYS if found.get(key) is not None), None)
    if k is None:
        raise DataError(f"{what}: no camera matrix ({', '.join(MATRIX_KEYS)}) in it")
    if k.size != 9:
        raise DataError(f"{what}: the camera matrix has {k.size} values, not 9 (3x3)")
    k = k.reshape(3, 3)
    if k[0, 1] != 0 or k[1, 0] != 0 or tuple(k[2]) != (0, 0, 1):
        raise DataError(f"{what}: the camera matrix is not a pinhole K "
                        f"[fx 0 cx; 0 fy cy; 0 0 1]: {k.ravel().tolist()}")  # fmt: skip
    width, height = 0, 0
    for wk, hk in SIZE_KEYS:
        w, h = found.get(wk), found.get(hk)
        if isinstance(w, (int, float)) and isinstance(h, (int, float)) and w > 0 and h > 0:
            width, height = int(w), int(h)
            break
    source = p.name + ("" if width else " (no image size in the file)")
    return checked(Intrinsics(float(k[0, 0]), float(k[1, 1]), float(k[0, 2]), float(k[1, 2]),
                              width, height, source), what)  # fmt: skip


def _matrix(value: Any) -> np.ndarray | None:
    """A ROS ``{rows, cols, data}`` map or a flat list as float64 values (None otherwise)."""
    if isinstance(value, dict):
        value = value.get("data")
    if isinstance(value, list):
        try:
            return np.asarray(value, np.float64).ravel()
        except (TypeError, ValueError):
            return None
    return None


def _yaml_fields(text: str, what: str) -> dict[str, Any]:
    """The matrix and size keys of a plain YAML file (ROS)."""
    import yaml

    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0] if str(exc) else "unreadable"
        raise DataError(f"{what}: not a YAML file ({first}); {CAMERA_FILES}") from None
    if not isinstance(doc, dict):
        raise DataError(f"{what}: not a YAML mapping of camera fields; {CAMERA_FILES}")
    found: dict[str, Any] = {key: _matrix(doc.get(key)) for key in MATRIX_KEYS}
    for pair in SIZE_KEYS:
        for key in pair:
            found[key] = doc.get(key)
    return found


def _opencv_fields(p: Path, what: str) -> dict[str, Any]:
    """The matrix and size keys of an OpenCV FileStorage file (YAML or XML)."""
    import cv2

    try:
        fs = cv2.FileStorage(str(p), cv2.FILE_STORAGE_READ)
        opened = fs.isOpened()
    except (cv2.error, SystemError):
        opened = False
    if not opened:
        raise DataError(f"{what}: not a YAML or XML file OpenCV can read; {CAMERA_FILES}")
    found: dict[str, Any] = {}
    try:
        for key in MATRIX_KEYS:
            node = fs.getNode(key)
            mat = None if node.empty() else node.mat()
            found[key] = None if mat is None else np.asarray(mat, np.float64).ravel()
            if found[key] is None and not node.empty() and node.isSeq():
                found[key] = np.array([node.at(i).real() for i in range(node.size())])
        for pair in SIZE_KEYS:
            for key in pair:
                node = fs.getNode(key)
                found[key] = None if node.empty() else node.real()
        size = fs.getNode("imageSize")
        if not size.empty() and size.isSeq() and size.size() == 2:
            found["image_width"], found["image_height"] = size.at(0).real(), size.at(1).real()
    finally:
        fs.release()
    return found


def read_kitti_calib(path: str | os.PathLike[str], camera: str = "02") -> Intrinsics:
    """Camera ``camera``'s rectified intrinsics (``P_rect_XX``) at ``S_rect_XX`` from KITTI
    raw's ``calib_cam_to_cam.txt`` (one line per key: ``KEY: v1 v2 ...``)."""
    p = Path(path)
    try:
        text = p.read_text(errors="replace")
    except OSError as exc:
        raise DataError(f"KITTI calibration {p}: cannot read ({exc.strerror})") from None
    date = p.parent.name if re.match(r"\d{4}_\d\d_\d\d$", p.parent.name) else ""
    return parse_kitti_calib(text, str(p), date, camera)


def parse_kitti_calib(text: str, where: str, date: str = "", camera: str = "02") -> Intrinsics:
    """``read_kitti_calib`` on the file's text (``where`` names it in errors; ``date``: its
    drive date, for the source)."""
    rows: dict[str, list[float]] = {}
    for line in text.splitlines():
        key, sep, rest = line.partition(":")
        if not sep or key.strip() == "calib_time":
            continue
        try:
            rows[key.strip()] = [float(v) for v in rest.split()]
        except ValueError:
            continue
    proj, size = rows.get(f"P_rect_{camera}"), rows.get(f"S_rect_{camera}")
    if proj is None or len(proj) != 12 or size is None or len(size) != 2:
        raise DataError(f"KITTI calibration {where}: no 12-value P_rect_{camera} and 2-value "
                        f"S_rect_{camera}; is it calib_cam_to_cam.txt?")  # fmt: skip
    source = f"KITTI {date} P_rect_{camera}" if date else f"{Path(where).name} P_rect_{camera}"
    intr = Intrinsics(proj[0], proj[5], proj[2], proj[6], round(size[0]), round(size[1]), source)
    return checked(intr, f"KITTI calibration {where}")


def kitti_calib_text(intr: Intrinsics, camera: str = "02") -> str:
    """The ``calib_time`` / ``S_rect_XX`` / ``P_rect_XX`` lines of a ``calib_cam_to_cam.txt``
    for ``intr`` (a sized camera), in KITTI's own layout (``%e`` values, 3x4 row-major P)."""
    p = (intr.fx, 0, intr.cx, 0, 0, intr.fy, intr.cy, 0, 0, 0, 1, 0)
    return (f"calib_time: 09-Jan-2012 13:57:47\n"
            f"S_rect_{camera}: {intr.width:e} {intr.height:e}\n"
            f"P_rect_{camera}: {' '.join(f'{v:e}' for v in p)}\n")  # fmt: skip


def focal_scale(deploy: Intrinsics, train: Intrinsics) -> float:
    """``f_deploy / f_train`` on focal lengths relative to the image size (what the model sees
    after its resize), the geometric mean over x and y; both cameras must be sized."""
    for cam, who in ((deploy, "the deployment camera"), (train, "the training camera")):
        if not cam.sized:
            raise DataError(f"{who} has no image size; give it as fx,fy,cx,cy@WxH")
    sx = (deploy.fx / deploy.width) / (train.fx / train.width)
    sy = (deploy.fy / deploy.height) / (train.fy / train.height)
    return math.sqrt(sx * sy)


FOCAL_MODES = ("none", "auto")  # or a number: the factor itself


@dataclass(frozen=True)
class ImageCamera:
    """The camera of one image as fed: its intrinsics at the image's size, ``f_deploy /
    f_train`` (1.0 without two cameras to compare) and the factor applied to the depth."""

    intrinsics: Intrinsics | None
    focal_ratio: float
    applied: float

    def record(self) -> dict[str, Any]:
        """JSON-able: what every output of the image records."""
        intr = self.intrinsics.to_dict() if self.intrinsics is not None else None
        return {"intrinsics": intr, "focal_ratio": self.focal_ratio,
                "focal_scale_applied": self.applied}  # fmt: skip


@dataclass(frozen=True)
class CameraPlan:
    """Which camera the images come from (``deploy``: the user's; None: the training
    camera's), the model's training camera and the focal-length correction asked for
    (``focal``: none | auto | a factor as text)."""

    training: Intrinsics | None = None
    deploy: Intrinsics | None = None
    focal: str = "none"

    def for_image(self, width: int, height: int) -> ImageCamera:
        """The camera of a ``width`` x ``height`` image and the depth factor (see module)."""
        return self.for_frame(width, height, width, height)

    def for_frame(self, width: int, height: int, out_w: int, out_h: int) -> ImageCamera:
        """The camera of a depth map ``out_w`` x ``out_h`` made from a ``width`` x ``height``
        frame (an unsized ``deploy`` is the frame's) and the depth factor."""
        cam = self.deploy.scaled(width, height) if self.deploy is not None else self.training
        intr = cam.scaled(out_w, out_h) if cam is not None else None
        ratio = 1.0
        if self.deploy is not None and self.training is not None and intr is not None:
            ratio = focal_scale(intr, self.training)
        if self.focal == "auto":
            applied = ratio
        elif self.focal == "none":
            applied = 1.0
        else:
            applied = float(self.focal)
        return ImageCamera(intr, ratio, applied)

    def warning(self, focal_ratio: float) -> str | None:
        """One line when the field of view differs by more than ``FOV_WARNING`` and no
        correction was asked for (None otherwise)."""
        if self.focal != "none" or abs(focal_ratio - 1) <= FOV_WARNING:
            return None
        assert self.training is not None
        return (
            f"warning: this camera's focal length (relative to the image) is "
            f"{focal_ratio:.3f}x the training camera's ({self.training.text()}): the "
            f"metric depth is off by about that factor; --focal-scale auto corrects it"
        )

    def record(self) -> dict[str, Any]:
        """JSON-able: the cameras and the correction (``camera.json`` and PLY comments)."""
        return {"training_camera": self.training.to_dict() if self.training else None,
                "camera": self.deploy.to_dict() if self.deploy else None,
                "focal_scale": self.focal}  # fmt: skip


def camera_fields(plan: CameraPlan, image: ImageCamera) -> dict[str, str]:
    """The cameras and the correction of one output as text fields (PNG tEXt chunks, PLY
    comments), so every file says what it holds."""
    fields = {
        "densedepth_units": "depth in metres (PNG: uint16 millimetres); camera frame x right, "
        "y down, z forward (OpenCV)",
        "densedepth_focal_scale": f"{plan.focal} (applied {image.applied:.6g}, "
        f"f_deploy/f_train {image.focal_ratio:.6g})",
    }
    if image.intrinsics is not None:
        fields["densedepth_intrinsics"] = image.intrinsics.text()
    if plan.training is not None:
        fields["densedepth_training_camera"] = plan.training.text()
    return fields


def plan_camera(
    training: Any, deploy: Intrinsics | None, focal: str = "none", need: bool = False
) -> CameraPlan:
    """A CameraPlan from a model's recorded training camera (its metadata dict, or None),
    the user's camera and ``--focal-scale``; one line when ``need`` (a point cloud) or
    ``focal`` asks for a camera the model does not record."""
    focal = check_focal(focal)
    train = intrinsics_from_dict(training)
    if focal == "auto" and train is None:
        raise DataError("--focal-scale auto needs the model's training camera, and this model "
                        "records none: give the factor itself (--focal-scale 1.1)")  # fmt: skip
    if focal == "auto" and train is not None and not train.sized:
        raise DataError("--focal-scale auto: the model's training camera has no image size")
    if need and train is None and deploy is None:
        raise DataError(
            "a point cloud needs the camera's intrinsics and this model records no "
            "training camera: pass --intrinsics fx,fy,cx,cy or --camera-info FILE"
        )
    return CameraPlan(train, deploy, focal)


def check_focal(focal: str) -> str:
    """``none``, ``auto`` or a positive finite number (as text), one line otherwise."""
    text = str(focal).strip().lower()
    if text in FOCAL_MODES:
        return text
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise DataError(f"--focal-scale {focal!r}: choose none, auto or a positive factor")
    return repr(value)


def backproject(
    depth: np.ndarray,
    intr: Intrinsics,
    rgb: np.ndarray | None = None,
    stride: int = 1,
    valid: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Points (N, 3) float32 metres in the camera frame (OpenCV axes) of every ``stride``-th
    pixel in both directions with finite, positive depth (and ``valid``, where given):
    ``x = (u - cx) z / fx``, ``y = (v - cy) z / fy``, ``z = depth[v, u]``; with their RGB
    (N, 3) uint8 from ``rgb`` of the same size. ``intr`` is scaled to the depth map's size."""
    if depth.ndim != 2:
        raise DataError(f"depth map must be 2-D (H, W), got shape {depth.shape}")
    if stride < 1:
        raise DataError(f"point cloud stride must be >= 1, got {stride}")
    h, w = depth.shape
    if rgb is not None and rgb.shape[:2] != (h, w):
        raise DataError(f"colour image {rgb.shape[:2]} and depth map {(h, w)} differ in size")
    cam = intr.scaled(w, h)
    vs, us = np.mgrid[0:h:stride, 0:w:stride]
    z = depth[::stride, ::stride].astype(np.float64)
    keep = np.isfinite(z) & (z > 0)
    if valid is not None:
        keep &= valid[::stride, ::stride]
    z, us, vs = z[keep], us[keep], vs[keep]
    pts = np.stack([(us - cam.cx) * z / cam.fx, (vs - cam.cy) * z / cam.fy, z], axis=1)
    colours = None if rgb is None else rgb[::stride, ::stride][keep].astype(np.uint8)
    return pts.astype(np.float32), colours


def write_ply(
    path: str | os.PathLike[str],
    points: np.ndarray,
    colours: np.ndarray | None = None,
    comments: list[str] | tuple[str, ...] = (),
) -> Path:
    """A binary little-endian PLY of ``points`` (N, 3) float32 and ``colours`` (N, 3) uint8
    (red green blue), written atomically; ``comments``: header lines (no newlines)."""
    pts = np.asarray(points, np.float32)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise DataError(f"points must be (N, 3), got shape {pts.shape}")
    fields = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")]
    if colours is not None:
        if colours.shape != pts.shape:
            raise DataError(f"colours {colours.shape} and points {pts.shape} differ in shape")
        fields += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
    vertex = np.empty(len(pts), dtype=fields)
    for i, axis in enumerate("xyz"):
        vertex[axis] = pts[:, i]
    if colours is not None:
        for i, channel in enumerate(("red", "green", "blue")):
            vertex[channel] = colours[:, i]
    props = [f"property float {a}" for a in "xyz"]
    if colours is not None:
        props += [f"property uchar {c}" for c in ("red", "green", "blue")]
    notes = [f"comment {c}" for c in comments if c]
    if any("\n" in c or "\r" in c for c in comments):
        raise DataError("PLY comments must be single lines")
    header = "\n".join(["ply", "format binary_little_endian 1.0", *notes,
                        f"element vertex {len(pts)}", *props, "end_header"]) + "\n"  # fmt: skip
    target = Path(path)
    with atomic_path(target) as tmp, open(tmp, "wb") as f:
        f.write(header.encode("ascii", errors="replace"))
        f.write(vertex.tobytes())
    return target
