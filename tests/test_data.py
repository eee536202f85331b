"""Dataset readers on bytes written in the real layouts, bad input, augmentation, batching."""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from PIL import Image

from densedepth.data import augment as A
from densedepth.data import preprocess as P
from densedepth.data import readers as D
from densedepth.data import writers as DW
from densedepth.util.errors import DataError
from train import dataset as T

H, W = 32, 48


def make_samples(n: int, seed: int = 0, h: int = H, w: int = W) -> list[D.Sample]:
    """Random but smooth samples (JPEG-friendly RGB, depth in 0.5..9.5 m)."""
    rng = np.random.default_rng(seed)
    out = []
    yy, xx = np.mgrid[0:h, 0:w]
    for _ in range(n):
        base = rng.uniform(0, 255, 3)
        rgb = (base + 40 * np.sin(xx / 5.0 + rng.uniform(0, 6))[..., None]).clip(0, 255)
        depth = 0.5 + 9.0 * (yy / h) * rng.uniform(0.3, 1.0) + 0.1 * (xx / w)
        out.append((rgb.astype(np.uint8), depth.astype(np.float32)))
    return out


@pytest.fixture(scope="module")
def samples() -> list[D.Sample]:
    return make_samples(5)


# --------------------------------------------------------------------------------- nyu_data.zip


def test_nyu_data_zip_layout_and_round_trip(tmp_path: Path, samples: list[D.Sample]) -> None:
    path = DW.write_nyu_data_zip(tmp_path / "nyu_data.zip", samples[:3], samples[3:])
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        train_csv = zf.read("data/nyu2_train.csv").decode()
        test_csv = zf.read("data/nyu2_test.csv").decode()
        first_train = train_csv.splitlines()[0].split(",")
        assert first_train[0].startswith("data/nyu2_train/") and first_train[0].endswith(".jpg")
        assert Image.open(io.BytesIO(zf.read(first_train[0]))).format == "JPEG"
        assert Image.open(io.BytesIO(zf.read(first_train[1]))).mode == "L"  # 8-bit train depth
        first_test = test_csv.splitlines()[0].split(",")
        assert first_test == ["data/nyu2_test/00000_colors.png", "data/nyu2_test/00000_depth.png"]
        assert Image.open(io.BytesIO(zf.read(first_test[1]))).mode == "I;16"
    assert "data/nyu2_train.csv" in names and len(test_csv.splitlines()) == 2

    train = D.open_dataset(path, "train")
    assert isinstance(train, D.NyuDataZip) and len(train) == 3
    for (rgb, depth), (rgb0, depth0) in zip(train, samples[:3], strict=True):
        assert rgb.dtype == np.uint8 and rgb.shape == (H, W, 3)
        assert np.abs(rgb.astype(int) - rgb0).mean() < 3  # JPEG
        assert depth.dtype == np.float32
        assert np.abs(depth - depth0).max() <= 10 / 255 / 2 + 1e-5  # value / 255 * 10 m
    test = D.open_dataset(path, "test")
    assert len(test) == 2
    for (rgb, depth), (rgb0, depth0) in zip(test, samples[3:], strict=True):
        np.testing.assert_array_equal(rgb, rgb0)
        assert np.abs(depth - depth0).max() <= 0.0005 + 1e-6  # millimetres
    assert train.scene(0) == "synthetic_room_0000_out"


def _rewrite_zip(src: Path, dst: Path, replace: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for name in zin.namelist():
            zout.writestr(name, replace.get(name, zin.read(name)))
        for name, payload in replace.items():
            if name not in zin.namelist():
                zout.writestr(name, payload)
    return dst


@pytest.fixture
def nyu_zip(tmp_path: Path, samples: list[D.Sample]) -> Path:
    return DW.write_nyu_data_zip(tmp_path / "nyu_data.zip", samples[:2], samples[2:4])


def test_csv_row_naming_a_missing_member(tmp_path: Path, nyu_zip: Path) -> None:
    bad = _rewrite_zip(
        nyu_zip, tmp_path / "bad.zip", {"data/nyu2_test.csv": b"data/nope.png,data/nope2.png\n"}
    )
    with pytest.raises(DataError, match=r"line 1 names 'data/nope.png', which is not in"):
        D.open_dataset(bad, "test")


@pytest.mark.parametrize(
    "member", ["/etc/passwd", "../outside.png", "data/../../x.png", "C:/x.png"]
)
def test_csv_member_path_leaving_the_archive(tmp_path: Path, nyu_zip: Path, member: str) -> None:
    row = f"{member},data/nyu2_test/00000_depth.png\n".encode()
    bad = _rewrite_zip(nyu_zip, tmp_path / "bad.zip", {"data/nyu2_test.csv": row})
    with pytest.raises(DataError, match="absolute or leaves the archive"):
        D.open_dataset(bad, "test")


def test_corrupt_and_truncated_png_members(tmp_path: Path, nyu_zip: Path) -> None:
    with zipfile.ZipFile(nyu_zip) as zf:
        good = zf.read("data/nyu2_test/00000_colors.png")
    for label, payload in (("junk", b"\x89PNG garbage"), ("cut", good[: len(good) // 2])):
        bad = _rewrite_zip(
            nyu_zip, tmp_path / f"{label}.zip", {"data/nyu2_test/00000_colors.png": payload}
        )
        ds = D.open_dataset(bad, "test")
        with pytest.raises(DataError, match=r"cannot decode image .*corrupt or truncated"):
            ds[0]
        ds[1]  # the other samples stay readable


def test_truncated_and_foreign_zip(tmp_path: Path, nyu_zip: Path) -> None:
    cut = tmp_path / "cut.zip"
    cut.write_bytes(nyu_zip.read_bytes()[: nyu_zip.stat().st_size // 2])
    with pytest.raises(DataError, match="not a readable zip archive"):
        D.open_dataset(cut)
    other = tmp_path / "other.zip"
    with zipfile.ZipFile(other, "w") as zf:
        zf.writestr("readme.txt", "hello")
    with pytest.raises(DataError, match=r"neither data/nyu2_train.csv"):
        D.open_dataset(other)


def test_depth_png_of_wrong_bit_depth(tmp_path: Path, nyu_zip: Path) -> None:
    eight_bit = DW.encode_png(np.full((H, W), 100, np.uint8))
    sixteen = DW.encode_png(np.full((H, W), 1000, np.uint16))
    bad = _rewrite_zip(
        nyu_zip,
        tmp_path / "bad.zip",
        {"data/nyu2_test/00000_depth.png": eight_bit, "data/nyu2_test/00001_depth.png": sixteen},
    )
    with pytest.raises(DataError, match="8-bit; expected 16-bit millimetres"):
        D.open_dataset(bad, "test")[0]
    np.testing.assert_allclose(D.open_dataset(bad, "test")[1][1], 1.0)


def test_depth_png_of_wrong_shape_or_channels(tmp_path: Path, nyu_zip: Path) -> None:
    small = DW.encode_png(np.full((H // 2, W), 1000, np.uint16))
    rgb_depth = DW.encode_png(np.zeros((H, W, 3), np.uint8))
    bad = _rewrite_zip(
        nyu_zip,
        tmp_path / "bad.zip",
        {"data/nyu2_test/00000_depth.png": small, "data/nyu2_test/00001_depth.png": rgb_depth},
    )
    ds = D.open_dataset(bad, "test")
    with pytest.raises(DataError, match=r"depth is \(16, 48\) but RGB is \(32, 48\)"):
        ds[0]
    with pytest.raises(DataError, match="3 channels; expected one channel"):
        ds[1]


def test_grayscale_rgb_is_refused_rgba_and_palette_are_converted() -> None:
    gray = DW.encode_png(np.zeros((4, 4), np.uint8))
    with pytest.raises(DataError, match=r"grayscale \(mode L\); an RGB image was expected"):
        D.decode_rgb(gray, "x.png")
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 17
    out = D.decode_rgb(DW.encode_png(rgba), "x.png")
    assert out.shape == (4, 4, 3) and (out[..., 0] == 200).all()
    buf = io.BytesIO()
    Image.fromarray(np.full((4, 4, 3), 50, np.uint8)).convert("P").save(buf, "PNG")
    assert D.decode_rgb(buf.getvalue(), "p.png").shape == (4, 4, 3)


def test_check_sample_refuses_nan_negative_and_bad_dtypes() -> None:
    rgb = np.zeros((4, 4, 3), np.uint8)
    depth = np.ones((4, 4), np.float32)
    D.check_sample(rgb, depth, "ok")
    with pytest.raises(DataError, match="NaN or inf"):
        D.check_sample(rgb, np.where(depth > 0, np.nan, 0).astype(np.float32), "n")
    with pytest.raises(DataError, match="negative"):
        D.check_sample(rgb, -depth, "n")
    with pytest.raises(DataError, match="depth must be float HxW"):
        D.check_sample(rgb, depth.astype(np.uint16), "n")
    with pytest.raises(DataError, match="RGB must be uint8 HxWx3"):
        D.check_sample(rgb.astype(np.float32), depth, "n")


# --------------------------------------------------------------------------------- nyu_test.zip


@pytest.mark.parametrize("compress", [False, True])
def test_nyu_test_zip_round_trip(tmp_path: Path, samples: list[D.Sample], compress: bool) -> None:
    path = DW.write_nyu_test_zip(tmp_path / "nyu_test.zip", samples, (1, 30, 2, 45), compress)
    with zipfile.ZipFile(path) as zf:
        assert sorted(zf.namelist()) == sorted(D.EIGEN_FILES)
        rgb_all = np.load(io.BytesIO(zf.read("eigen_test_rgb.npy")))
        assert rgb_all.shape == (5, H, W, 3) and rgb_all.dtype == np.uint8
    ds = D.open_dataset(path, "test")
    assert isinstance(ds, D.NyuTestZip) and len(ds) == 5 and ds.crop == (1, 30, 2, 45)
    assert isinstance(ds.rgb, np.memmap) != compress  # stored members are mapped in place
    for (rgb, depth), (rgb0, depth0) in zip(ds, samples, strict=True):
        np.testing.assert_array_equal(rgb, rgb0)
        np.testing.assert_array_equal(depth, depth0)
    with pytest.raises(DataError, match="holds only the test split"):
        D.open_dataset(path, "train")


def test_nyu_test_zip_bad_arrays(tmp_path: Path, samples: list[D.Sample]) -> None:
    path = DW.write_nyu_test_zip(tmp_path / "nyu_test.zip", samples, (0, H - 1, 0, W - 1))
    nan_depth = np.stack([s[1] for s in samples])
    nan_depth[1, 0, 0] = np.nan
    bad = _rewrite_zip(
        path, tmp_path / "nan.zip", {"eigen_test_depth.npy": DW._npy_bytes(nan_depth)}
    )
    ds = D.open_dataset(bad, "test")
    ds[0]
    with pytest.raises(DataError, match=r"nyu_test\.zip\[1\]|nan\.zip\[1\].*NaN"):
        ds[1]
    wrong = _rewrite_zip(
        path, tmp_path / "w.zip", {"eigen_test_depth.npy": DW._npy_bytes(nan_depth[:, :4].copy())}
    )
    with pytest.raises(DataError, match=r"eigen_test_depth.npy is float32"):
        D.open_dataset(wrong, "test")
    ints = _rewrite_zip(
        path, tmp_path / "i.zip", {"eigen_test_rgb.npy": DW._npy_bytes(np.zeros((5, H, W, 3)))}
    )
    with pytest.raises(DataError, match="expected uint8"):
        D.open_dataset(ints, "test")
    crop = _rewrite_zip(
        path,
        tmp_path / "c.zip",
        {"eigen_test_crop.npy": DW._npy_bytes(np.array([20, 459, 24, 615]))},
    )
    with pytest.raises(DataError, match="does not fit 32x48"):
        D.open_dataset(crop, "test")


# --------------------------------------------------------------------------------- labeled .mat


def test_labeled_mat_layout_and_round_trip(tmp_path: Path, samples: list[D.Sample]) -> None:
    path = DW.write_labeled_mat(tmp_path / D.LABELED_MAT, samples, [0, 2, 4], [1, 3])
    assert path.read_bytes()[:19] == b"MATLAB 7.3 MAT-file"
    assert (tmp_path / "splits.mat").read_bytes()[:19] == b"MATLAB 5.0 MAT-file"
    with h5py.File(path, "r") as f:
        assert f["images"].shape == (5, 3, W, H) and f["images"].dtype == np.uint8
        assert f["depths"].shape == (5, W, H)
    from scipy.io import loadmat

    splits = loadmat(tmp_path / "splits.mat")
    np.testing.assert_array_equal(splits["trainNdxs"].ravel(), [1, 3, 5])  # 1-based
    train = D.open_dataset(path, "train")
    test = D.open_dataset(tmp_path, "test")  # the folder is recognised too
    assert isinstance(test, D.LabeledMat) and (len(train), len(test)) == (3, 2)
    for ds, idx in ((train, [0, 2, 4]), (test, [1, 3])):
        for (rgb, depth), j in zip(ds, idx, strict=True):
            np.testing.assert_array_equal(rgb, samples[j][0])
            np.testing.assert_array_equal(depth, samples[j][1])


def test_labeled_mat_without_splits_or_keys(tmp_path: Path, samples: list[D.Sample]) -> None:
    path = DW.write_labeled_mat(tmp_path / D.LABELED_MAT, samples, [0], [1])
    (tmp_path / "splits.mat").unlink()
    with pytest.raises(DataError, match=r"needs the official splits.mat"):
        D.open_dataset(path, "train")
    other = tmp_path / "other" / D.LABELED_MAT
    other.parent.mkdir()
    with h5py.File(other, "w") as f:
        f["rgb"] = np.zeros((1, 3, 4, 4), np.uint8)
    with pytest.raises(DataError, match=r"missing \['images', 'depths'\]"):
        D.open_dataset(other)
    v5 = tmp_path / "v5.mat"
    from scipy.io import savemat

    savemat(v5, {"images": np.zeros((2, 2))})
    with pytest.raises(DataError, match=r"not a MATLAB v7.3 \(HDF5\) file"):
        D.open_dataset(v5)


def test_splits_mat_with_wrong_variables(tmp_path: Path, samples: list[D.Sample]) -> None:
    from scipy.io import savemat

    path = DW.write_labeled_mat(tmp_path / D.LABELED_MAT, samples, [0], [1])
    savemat(tmp_path / "splits.mat", {"train": np.ones((2, 1))})
    with pytest.raises(DataError, match="expected variables trainNdxs and testNdxs"):
        D.open_dataset(path)
    savemat(tmp_path / "splits.mat", {"trainNdxs": [[1], [99]], "testNdxs": [[2]]})
    with pytest.raises(DataError, match="outside the 5 images"):
        D.open_dataset(path)


# --------------------------------------------------------------------------------- pairs


def test_pairs_folder_round_trip_and_errors(tmp_path: Path, samples: list[D.Sample]) -> None:
    DW.write_pairs(tmp_path / "train", samples[:3])
    DW.write_pairs(tmp_path / "test", samples[3:])
    assert Image.open(tmp_path / "train" / "00000_depth.png").mode == "I;16"
    train, test = D.open_dataset(tmp_path, "train"), D.open_dataset(tmp_path, "test")
    assert isinstance(train, D.PairsFolder) and (len(train), len(test)) == (3, 2)
    rgb, depth = test[-1]
    np.testing.assert_array_equal(rgb, samples[4][0])
    assert np.abs(depth - samples[4][1]).max() <= 0.0005 + 1e-6
    (tmp_path / "train" / "00001_depth.png").unlink()
    with pytest.raises(DataError, match=r"00001_depth.png is missing"):
        D.open_dataset(tmp_path, "train")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no dataset found"):
        D.open_dataset(tmp_path / "empty")


def test_open_dataset_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        D.open_dataset(tmp_path / "nothing")
    with pytest.raises(DataError, match="unknown split 'val'"):
        D.open_dataset("synthetic", "val")
    (tmp_path / "x.txt").write_text("x")
    with pytest.raises(DataError, match="unknown dataset format"):
        D.open_dataset(tmp_path / "x.txt")
    with pytest.raises(DataError, match="unknown format"):
        DW.write_synthetic(tmp_path, "tfrecord", 1, 1, height=32, width=32)


NYU_SAMPLES = os.environ.get("NYU_SAMPLES_DIR")


@pytest.mark.skipif(not NYU_SAMPLES, reason="set NYU_SAMPLES_DIR to ../shared/nyu-samples")
def test_real_nyu_pairs() -> None:
    root = Path(NYU_SAMPLES)
    meta = {m["name"]: m for m in json.loads((root / "pairs.json").read_text())}
    ds = D.open_dataset(root / "pairs")
    assert len(ds) == len(meta) > 0
    for (rgb_path, _), (rgb, depth) in zip(ds.pairs, ds, strict=True):
        info = meta[rgb_path.name[: -len("_rgb.png")]]
        assert rgb.dtype == np.uint8 and rgb.shape == (*info["shape"], 3)
        assert depth.dtype == np.float32 and depth.shape == tuple(info["shape"])
        valid = depth[depth > 0]
        assert valid.size > 0.3 * depth.size
        assert 0.3 < np.median(valid) < 10.0  # indoor scenes, metres
        if info["depth_kind"].startswith("filled"):
            assert valid.size == depth.size  # filled depth has no holes


# --------------------------------------------------------------------------------- synthetic


@pytest.mark.parametrize("fmt", [f for f in D.DATASET_LAYOUTS if f != "kitti"])  # kitti: below
def test_synthetic_written_in_every_format_reads_back(tmp_path: Path, fmt: str) -> None:
    out = DW.write_synthetic(tmp_path / fmt, fmt, n_train=2, n_test=2, seed=3, height=32, width=32)
    direct = D.open_dataset("synthetic", "test", n=2, seed=4, height=32, width=32)
    test = D.open_dataset(out, "test")
    assert len(test) == 2
    rgb, depth = test[1]
    rgb0, depth0 = direct[1]
    assert rgb.shape == (32, 32, 3) and depth.shape == (32, 32)
    tol = 0.0005 + 1e-6 if fmt in ("pairs", "nyu-data-zip") else 0.0
    assert np.abs(depth - depth0).max() <= tol
    np.testing.assert_array_equal(rgb, rgb0)
    if fmt != "nyu-test-zip":
        assert len(D.open_dataset(out, "train")) == 2


def test_synthetic_train_and_test_are_disjoint() -> None:
    train = D.open_dataset("synthetic", "train", n=2, height=32, width=32)
    test = D.open_dataset("synthetic", "test", n=2, height=32, width=32)
    assert not np.array_equal(train[0][1], test[0][1])


# --------------------------------------------------------------------------------- augmentation


def test_augmentation_probabilities_are_the_papers() -> None:
    rng = np.random.default_rng(0)
    rgb = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    depth = np.arange(6, dtype=np.float32).reshape(2, 3)
    n, flips, swaps = 4000, 0, 0
    for _ in range(n):
        a_rgb, a_depth = A.augment(rgb, depth, rng)
        flipped = np.array_equal(a_depth, depth[:, ::-1])
        assert flipped or np.array_equal(a_depth, depth)
        base = rgb[:, ::-1] if flipped else rgb
        # depth is never permuted; the image is the (maybe flipped) image with channels permuted
        perm = [int(np.flatnonzero(base[0, 0] == v)[0]) for v in a_rgb[0, 0]]
        np.testing.assert_array_equal(a_rgb, base[:, :, perm])
        flips += flipped
        swaps += perm != [0, 1, 2]
    # binomial 4-sigma bands
    assert abs(flips / n - 0.5) < 4 * np.sqrt(0.25 / n)
    assert abs(swaps / n - 0.25) < 4 * np.sqrt(0.25 * 0.75 / n)


def test_resize_depth_with_holes_invents_no_depth() -> None:
    depth = np.full((8, 8), 4.0, np.float32)
    depth[:, :3] = 0
    small = P.resize_depth(depth, (4, 4))
    assert set(np.unique(small)) <= {0.0, 4.0}
    filled = np.linspace(1, 2, 64, dtype=np.float32).reshape(8, 8)
    np.testing.assert_allclose(P.resize_depth(filled, (4, 4)).mean(), filled.mean(), rtol=1e-5)


def test_torch_dataset_shapes_and_determinism() -> None:
    base = D.open_dataset("synthetic", "train", n=3, height=48, width=64)
    ds = T.TorchDepthDataset(base, input_size=(64, 96), seed=7)
    img, depth = ds[1]
    assert img.shape == (3, 64, 96) and img.dtype == torch.float32
    assert img.min() >= 0 and img.max() <= 1
    assert depth.shape == (1, 32, 48) and depth.dtype == torch.float32
    again = T.TorchDepthDataset(base, input_size=(64, 96), seed=7)[1]
    torch.testing.assert_close(again[0], img)
    epochs = []
    for epoch in range(6):
        ds.set_epoch(epoch)
        epochs.append(ds[1][0])
    assert any(not torch.equal(e, epochs[0]) for e in epochs[1:])  # augmentation varies
    plain = T.TorchDepthDataset(base, input_size=(64, 96), train=False)
    expected = T.rgb_to_tensor(P.resize_rgb(base[1][0], (64, 96)))
    torch.testing.assert_close(plain[1][0], expected)
    with pytest.raises(Exception, match="multiple of 32"):
        T.TorchDepthDataset(base, input_size=(50, 64))


def test_rgb_to_tensor_channels_and_strides() -> None:
    rgb = np.zeros((2, 4, 5, 3), np.uint8)
    rgb[..., 0], rgb[..., 2] = 255, 51
    t = T.rgb_to_tensor(rgb)
    assert t.shape == (2, 3, 4, 5) and t.is_contiguous()
    assert (
        torch.all(t[:, 0] == 1.0)
        and torch.all(t[:, 1] == 0)
        and torch.allclose(t[:, 2], torch.tensor(0.2))
    )


# ---------------------------------------------------------------------------------------------
# KITTI
# ---------------------------------------------------------------------------------------------


def test_kitti_layout_round_trips_with_split_files_and_folders(tmp_path: Path) -> None:
    """synth --format kitti writes KITTI's raw + annotated layout; the reader gives back each
    frame's sparse ground truth to 1/256 m, skips the split file's 'None' line, and without
    split files falls back to the benchmark's train / val drives."""
    from densedepth.data.synthetic_street import lidar_ground_truth, render_street

    root = DW.write_synthetic(tmp_path / "k", "kitti", 5, 3, seed=2, height=48, width=160)
    train, test = D.open_dataset(root, "train"), D.open_dataset(root, "test")
    assert isinstance(test, D.KittiDataset) and (len(train), len(test), test.skipped) == (5, 3, 1)
    rgb, depth = train[4]  # drive 2, its first frame
    assert rgb.shape == (48, 160, 3) and depth.shape == (48, 160) and depth.dtype == np.float32
    _, dense = render_street(2 * 1_000_003 + 2, 0, 48, 160)
    expected = np.rint(lidar_ground_truth(dense, (2 * 1_000_003 + 2) * 31 + 4) * 256) / 256
    np.testing.assert_array_equal(depth, expected.astype(np.float32))
    assert 0.01 < (depth > 0).mean() < 0.6  # 64 scan lines cover most of 48 rows
    full = lidar_ground_truth(render_street(7, 0)[1], 7)  # at KITTI's 375 x 1242
    assert 0.03 < (full > 0).mean() < 0.15  # sparse, as KITTI's annotated depth is
    from densedepth.evaluation import evaluate_dataset

    def street(x: np.ndarray) -> np.ndarray:  # 20 m everywhere, at half resolution
        return np.full((len(x), 1, x.shape[2] // 2, x.shape[3] // 2), 20.0, np.float32)

    assert evaluate_dataset(street, test, (32, 96))["protocol"] == "kitti-garg"  # auto: KITTI's
    nyu = D.open_dataset("synthetic", "test", n=2, height=32, width=32)
    assert evaluate_dataset(street, nyu, (32, 32))["protocol"] == "eigen"
    drives = D.open_dataset(root, "test", kitti_split="benchmark")
    assert drives.name == "kitti data_depth_annotated/val" and test.name.endswith(
        "test_files_with_gt.txt"
    )
    for name in ("eigen_train_files_with_gt.txt", "eigen_test_files_with_gt.txt"):
        (root / name).unlink()
    assert (len(D.open_dataset(root, "train")), len(D.open_dataset(root, "test"))) == (5, 3)
    with pytest.raises(DataError, match=r"--split eigen needs eigen_test_files_with_gt\.txt"):
        D.open_dataset(root, "test", kitti_split="eigen")


def test_kitti_bad_inputs_are_one_line(tmp_path: Path) -> None:
    root = DW.write_synthetic(tmp_path / "k", "kitti", 2, 1, height=32, width=96)
    listing = root / "eigen_test_files_with_gt.txt"
    good = listing.read_text()
    listing.write_text("../etc/passwd x.png 721.5\n")
    with pytest.raises(DataError, match="absolute or leaves"):
        D.open_dataset(root, "test")
    listing.write_text(good.replace("0000000005.png 2011", "0000000099.png 2011", 1))
    with pytest.raises(DataError, match=r"eigen_test_files_with_gt.txt:1: .*0000000099.png not"):
        D.open_dataset(root, "test")
    listing.write_text(good)
    gt = next((root / "data_depth_annotated" / "val").rglob("*.png"))
    gt.write_bytes(DW.encode_png(np.zeros((32, 96), np.uint8)))
    with pytest.raises(DataError, match="KITTI ground truth is 16-bit"):
        D.open_dataset(root, "test")[0]


def test_kitti_read_in_place_from_the_official_zips(tmp_path: Path) -> None:
    """The same frames from per-drive raw zips (``2011_09_26/DRIVE/image_02/data/...``) and
    data_depth_annotated.zip (``train/...``, ``val/...``), nothing extracted."""
    import shutil

    root = DW.write_synthetic(tmp_path / "k", "kitti", 5, 2, seed=4, height=32, width=96)
    before = [s for s in D.open_dataset(root, "test")] + [s for s in D.open_dataset(root, "train")]
    date = root / "2011_09_26"
    for drive in sorted(date.iterdir()):
        with zipfile.ZipFile(root / f"{drive.name}.zip", "w") as zf:
            for f in sorted(drive.rglob("*.png")):
                zf.write(f, f.relative_to(root).as_posix())
    gt = root / "data_depth_annotated"
    with zipfile.ZipFile(root / "data_depth_annotated.zip", "w") as zf:
        for f in sorted(gt.rglob("*.png")):
            zf.write(f, f.relative_to(gt).as_posix())
    shutil.rmtree(date)
    shutil.rmtree(gt)
    after = [s for s in D.open_dataset(root, "test")] + [s for s in D.open_dataset(root, "train")]
    assert len(after) == len(before) == 7
    for (r0, d0), (r1, d1) in zip(before, after, strict=True):
        np.testing.assert_array_equal(r0, r1)
        np.testing.assert_array_equal(d0, d1)
    for name in ("eigen_train_files_with_gt.txt", "eigen_test_files_with_gt.txt"):
        (root / name).unlink()
    assert len(D.open_dataset(root, "train")) == 5  # the zips' train/ drives
    assert not any(p.suffix == ".png" for p in root.rglob("*"))  # nothing was extracted
