"""Downloads against a loopback HTTP server the test starts and stops (127.0.0.1, a free
port): resume after a cut, a server that ignores Range, 404, a stall, an HTML page served as
the zip, hashes right and wrong, no room on the disk; nothing half-written under a final name."""

from __future__ import annotations

import hashlib
import http.server
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest

from densedepth.util.download import DownloadError, Remote, fetch

PAYLOAD_MB = 3


class Handler(http.server.BaseHTTPRequestHandler):
    """``/ok/NAME`` with Range; ``/norange/NAME`` ignoring it; ``/cut/NAME`` closing the
    connection halfway the first time; ``/stall/NAME`` stopping after 64 KiB for 3 s;
    ``/html/NAME`` an HTML page; anything else 404. Every request is logged."""

    files: ClassVar[dict[str, bytes]] = {}
    requests: ClassVar[list[tuple[str, str | None]]] = []
    cut_done: ClassVar[set[str]] = set()

    def log_message(self, *args: object) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        kind, _, name = self.path.strip("/").partition("/")
        self.requests.append((self.path, self.headers.get("Range")))
        data = self.files.get(name)
        if kind == "html":
            body = b"<!DOCTYPE html><html><body>Please log in</body></html>"
            self._send(200, body, {"Content-Type": "text/html"})
            return
        if data is None or kind not in ("ok", "norange", "cut", "stall"):
            self._send(404, b"not found", {})
            return
        start = 0
        rng = self.headers.get("Range")
        if rng and kind != "norange":
            start = int(rng.split("=")[1].split("-")[0])
        if kind == "cut" and name not in self.cut_done:
            self.cut_done.add(name)
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.connection.shutdown(2)  # the connection cut mid-file
            return
        if start:
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        if kind == "stall":
            self.wfile.write(data[start : start + 65536])
            self.wfile.flush()
            time.sleep(3.0)
            return
        self.wfile.write(data[start:])

    def _send(self, code: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(code)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    """A loopback server on a free port, stopped at the end; its base URL."""
    from densedepth.data.writers import write_synthetic

    zip_bytes = write_synthetic(tmp_path / "src", "nyu-data-zip", 2, 1, 0, 32, 48).read_bytes()
    payload = bytes(range(256)) * (PAYLOAD_MB << 12)  # 3 MiB, not compressible by chance
    digest = hashlib.sha256(payload).hexdigest()
    Handler.files = {"nyu_data.zip": zip_bytes, "big.bin": payload,
                     f"densenet-{digest[:8]}.pth": payload,
                     "densenet-deadbeef.pth": payload}  # fmt: skip
    Handler.requests, Handler.cut_done = [], set()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_a_cut_download_resumes_to_an_identical_file(server: str, tmp_path: Path) -> None:
    """The connection is cut halfway: one line, the part kept, no final file; the rerun asks
    for the rest with Range and the file is byte-identical (sha256) to the served one."""
    payload = Handler.files["big.bin"]
    remote = Remote(f"{server}/cut/big.bin", size=len(payload))
    out = tmp_path / "dl"
    with pytest.raises(DownloadError, match="rerun the same command to resume") as err:
        fetch(remote, out)
    assert "\n" not in str(err.value)
    part = out / ".big.bin.part"
    assert not (out / "big.bin").exists() and 0 < part.stat().st_size < len(payload)
    had = part.stat().st_size
    t0 = time.perf_counter()
    path, digest = fetch(remote, out)
    resumed_s = time.perf_counter() - t0
    assert digest == sha(payload) == sha(path.read_bytes())
    assert Handler.requests[-1] == ("/cut/big.bin", f"bytes={had}-")
    assert not part.exists() and resumed_s < 30
    again = len(Handler.requests)
    assert fetch(remote, out) == (path, digest) and len(Handler.requests) == again  # kept


def test_a_server_that_ignores_range_restarts_rather_than_corrupts(
    server: str, tmp_path: Path
) -> None:
    payload = Handler.files["big.bin"]
    out = tmp_path / "dl"
    with pytest.raises(DownloadError):
        fetch(Remote(f"{server}/cut/big.bin", size=len(payload)), out)
    lines: list[str] = []
    path, digest = fetch(Remote(f"{server}/cut/big.bin", size=len(payload)), out,
                         mirror=f"{server}/norange", log=lines.append)  # fmt: skip
    assert digest == sha(payload) and path.read_bytes() == payload
    assert any("ignored the resume request" in line for line in lines)


def test_a_synthetic_nyu_zip_is_fetched_and_checked(server: str, tmp_path: Path) -> None:
    """--mirror BASE_URL appends the file's own name; the zip's members are CRC-checked."""
    zip_bytes = Handler.files["nyu_data.zip"]
    remote = Remote("https://example.invalid/densedepth/nyu_data.zip", size=len(zip_bytes))
    path, digest = fetch(remote, tmp_path / "dl", mirror=f"{server}/ok/")
    assert digest == sha(zip_bytes) and Handler.requests[-1][0] == "/ok/nyu_data.zip"
    from densedepth.data.readers import open_dataset

    assert len(open_dataset(str(path), "train")) == 2


def test_hash_in_the_name_accepts_the_right_file_and_refuses_a_foreign_one(
    server: str, tmp_path: Path
) -> None:
    """torch hub's rule: the right prefix lands; a wrong one is refused and nothing is kept;
    a foreign file already under the final name is refused and left untouched."""
    payload = Handler.files["big.bin"]
    good = next(n for n in Handler.files if n.startswith("densenet-") and "deadbeef" not in n)
    path, _ = fetch(Remote(f"{server}/ok/{good}", hash_in_name=True), tmp_path / "w")
    assert path.read_bytes() == payload
    with pytest.raises(DownloadError, match="does not start with deadbeef"):
        fetch(Remote(f"{server}/ok/densenet-deadbeef.pth", hash_in_name=True), tmp_path / "w")
    assert sorted(
        p.name for p in (tmp_path / "w").iterdir() if not p.name.startswith(".densedepth")
    ) == [good]
    foreign = tmp_path / "f" / good
    foreign.parent.mkdir()
    foreign.write_bytes(b"not the weights")
    with pytest.raises(DownloadError, match="was not written by this toolkit"):
        fetch(Remote(f"{server}/ok/{good}", hash_in_name=True), tmp_path / "f")
    assert foreign.read_bytes() == b"not the weights"


@pytest.mark.parametrize(
    ("path", "match"),
    [
        ("/missing/nyu_test.zip", "HTTP 404"),
        ("/html/nyu_data.zip", "HTML page"),
        ("/stall/big.bin", "stalled for 0.5 s"),
    ],
)
def test_network_failures_are_one_line_and_leave_no_final_file(
    server: str, tmp_path: Path, path: str, match: str
) -> None:
    out = tmp_path / "dl"
    name = path.rsplit("/", 1)[-1]
    with pytest.raises(DownloadError, match=match) as err:
        fetch(Remote(f"{server}{path}"), out, timeout=0.5)
    assert "\n" not in str(err.value)
    assert not (out / name).exists()
    if "html" in path:
        assert not (out / f".{name}.part").exists()  # a wrong but complete file is not kept


def test_an_unreachable_host_and_a_full_disk_are_refused_before_writing(tmp_path: Path) -> None:
    """A port nobody listens on; a size the disk cannot hold (the free-space check before
    anything is written; the disk filling mid-write is the next test)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    with pytest.raises(DownloadError, match="cannot reach"):
        fetch(Remote(f"http://127.0.0.1:{port}/x.zip"), tmp_path / "a", timeout=2)
    with pytest.raises(DownloadError, match="GB free"):
        fetch(Remote("http://127.0.0.1:9/huge.zip", size=10**17), tmp_path / "b")
    assert not any((tmp_path / "b").iterdir())


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs Linux's /dev/full")
def test_a_disk_that_fills_mid_write_is_one_line_and_leaves_no_final_file(
    server: str, tmp_path: Path
) -> None:
    """The kernel's own ENOSPC mid-file: the part is /dev/full (every write fails with ENOSPC
    once the free-space check has passed), so the download stops with one line naming the
    disk, nothing appears under the final name, and a rerun after the space is freed (the
    part made a plain file again) fetches the whole, identical file."""
    payload = Handler.files["big.bin"]
    out = tmp_path / "dl"
    out.mkdir()
    part = out / ".big.bin.part"
    part.symlink_to("/dev/full")
    remote = Remote(f"{server}/ok/big.bin", size=len(payload))
    with pytest.raises(DownloadError, match="disk full in") as err:
        fetch(remote, out)
    assert "\n" not in str(err.value) and "rerun the same command" in str(err.value)
    assert not (out / "big.bin").exists()
    part.unlink()  # the space freed
    path, digest = fetch(remote, out)
    assert digest == sha(payload) and path.read_bytes() == payload


def test_imagenet_weights_are_fetched_on_first_use_and_verified(
    server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """train's --weights imagenet with an empty torch hub cache: the file is fetched from the
    (loopback) URL into the cache, verified by the hash in its name and loaded; the second
    model reads the cache without a request; a file whose hash does not match its name is
    refused in one line and nothing lands in the cache."""
    torch = pytest.importorskip("torch", reason="the [train] extra loads weights")
    import io

    import torchvision

    import densedepth.model as dm

    net = torchvision.models.densenet121(weights=None)
    buf = io.BytesIO()
    torch.save(net.state_dict(), buf)
    data = buf.getvalue()
    good = f"densenet121-{sha(data)[:8]}.pth"
    Handler.files.update({good: data, "densenet121-0badc0de.pth": data})
    old = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))
    monkeypatch.delenv("DENSEDEPTH_OFFLINE", raising=False)
    try:
        monkeypatch.setattr(dm, "weights_url", lambda b: f"{server}/ok/{good}")
        m = dm.DenseDepth("densenet121", weights="imagenet")
        assert (tmp_path / "hub" / "checkpoints" / good).read_bytes() == data
        torch.testing.assert_close(m.encoder.features.conv0.weight, net.features.conv0.weight)
        count = len(Handler.requests)
        dm.DenseDepth("densenet121", weights="imagenet")
        assert len(Handler.requests) == count
        monkeypatch.setattr(dm, "weights_url", lambda b: f"{server}/ok/densenet121-0badc0de.pth")
        with pytest.raises(dm.WeightsNotFoundError, match="does not start with 0badc0de") as err:
            dm.DenseDepth("densenet121", weights="imagenet")
        assert "\n" not in str(err.value)
        assert not (tmp_path / "hub" / "checkpoints" / "densenet121-0badc0de.pth").exists()
    finally:
        torch.hub.set_dir(old)


def small_zip(members: dict[str, bytes]) -> bytes:
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def test_the_download_verb_fetches_records_and_says_what_to_run(
    server: str, tmp_path: Path
) -> None:
    """download nyu-data --mirror: the file, its sha256 in downloads.json and the train
    command; kitti-raw DRIVE brings the drive and its date's calibration; bad names are one
    line each and touch nothing."""
    import json

    from typer.testing import CliRunner

    from cli import app

    runner = CliRunner()
    out = tmp_path / "data"
    result = runner.invoke(app, ["download", "nyu-data", "--to", str(out), "--mirror",
                                 f"{server}/ok"])  # fmt: skip
    assert result.exit_code == 0, result.output
    served = Handler.files["nyu_data.zip"]
    record = json.loads((out / "downloads.json").read_text())["files"]["nyu_data.zip"]
    assert record["sha256"] == sha(served) and record["bytes"] == len(served)
    assert record["url"] == "https://tinyurl.com/nyu-data-zip"  # the authors' README link
    assert record["published_sha256"] == "not published"
    assert f"next: cli.py train --backbone densenet169 --data {out}/nyu_data.zip" in result.output
    Handler.files.update({
        "2011_09_26_drive_0001_sync.zip": small_zip({"2011_09_26/x.txt": b"frame"}),
        "2011_09_26_calib.zip": small_zip({"2011_09_26/calib_cam_to_cam.txt": b"S_rect_02: 1 1"}),
    })  # fmt: skip
    result = runner.invoke(app, ["download", "kitti-raw", "2011_09_26_drive_0001", "--to",
                                 str(out), "--mirror", f"{server}/ok"])  # fmt: skip
    assert result.exit_code == 0, result.output
    files = json.loads((out / "downloads.json").read_text())["files"]
    assert {"nyu_data.zip", "2011_09_26_drive_0001_sync.zip", "2011_09_26_calib.zip"} <= set(files)
    for args, match in ((["nyu-bogus"], "unknown download"), (["kitti-raw"], "needs drive"),
                        (["kitti-raw", "2011_09_26"], "not a KITTI raw drive"),
                        (["nyu-test", "2011_09_26_drive_0001"], "takes no drive names"),
                        (["nyu-test", "--split", "eigen"], "kitti-raw only"),
                        (["kitti-raw", "--split", "eigen-val"], "unknown --split")):  # fmt: skip
        bad = runner.invoke(app, ["download", *args, "--to", str(tmp_path / "no")])
        errors = [ln for ln in bad.output.splitlines() if ln.startswith("error:")]
        assert bad.exit_code == 1 and len(errors) == 1 and match in errors[0], bad.output
        assert not (tmp_path / "no").exists()


def test_the_eigen_split_table_is_bts_lists_drives() -> None:
    """--split eigen is the 61 drives of BTS's two list files (33 train, 28 test, none in
    both; counted from the files at BTS_COMMIT), each a well-formed drive name, and the lists
    themselves are pinned to that commit with their sha256."""
    from densedepth.data import downloads as D

    train, test = set(D.EIGEN_TRAIN_DRIVES), set(D.EIGEN_TEST_DRIVES)
    assert (len(train), len(test), len(train & test)) == (33, 28, 0)
    assert all(D.DRIVE.match(d) for d in train | test)
    assert set(D.split_files("eigen")[0]) == train | test
    drives, lists = D.split_files("eigen-test")
    assert set(drives) == test and [r.file_name for r in lists] == ["eigen_test_files_with_gt.txt"]
    assert all(D.BTS_COMMIT in r.url and r.sha256 and r.size for r in D.EIGEN_SPLIT_FILES.values())
    remotes = D.files_for("kitti-raw", sorted(train | test))
    calib = {r.file_name for r in remotes if r.file_name.endswith("_calib.zip")}
    assert len(remotes) == 61 + 5 and calib == {f"{d}_calib.zip" for d in
        ("2011_09_26", "2011_09_28", "2011_09_29", "2011_09_30", "2011_10_03")}  # fmt: skip


def zip_folder(root: Path, sub: str, strip: str = "") -> bytes:
    """The files under ``root/sub`` as a zip, member names relative to ``root/strip``."""
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for f in sorted((root / sub).rglob("*")):
            if f.is_file():
                zf.write(f, f.relative_to(root / strip).as_posix())
    return buf.getvalue()


def test_kitti_from_the_download_verb_opens_as_the_kitti_dataset(
    server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """KITTI's own zips of a synthetic KITTI tree (raw drives, the date's calibration, the
    annotated depth with train/ and val/ at its top, the BTS list), fetched with kitti-depth and
    kitti-raw --split: the folder of zips opens, as it is, as the same KITTI dataset (frames
    equal, camera from the calibration zip), and a rerun verifies what is there and fetches
    nothing again."""
    import json

    import numpy as np
    from typer.testing import CliRunner

    from cli import app
    from densedepth.data import downloads as D
    from densedepth.data.readers import open_dataset
    from densedepth.data.writers import write_synthetic

    src = write_synthetic(tmp_path / "street", "kitti", 2, 2, seed=3, height=32, width=96)
    raw = src / "2011_09_26"
    drives = sorted(p.name[: -len("_sync")] for p in raw.iterdir() if p.is_dir())
    Handler.files.update({f"{d}_sync.zip": zip_folder(src, f"2011_09_26/{d}_sync") for d in drives})
    calib = small_zip(
        {"2011_09_26/calib_cam_to_cam.txt": (raw / "calib_cam_to_cam.txt").read_bytes()}
    )
    test_list = (src / "eigen_test_files_with_gt.txt").read_bytes()
    Handler.files.update({"2011_09_26_calib.zip": calib,
                          "data_depth_annotated.zip": zip_folder(src, "data_depth_annotated",
                                                                 "data_depth_annotated"),
                          "eigen_test_files_with_gt.txt": test_list})  # fmt: skip
    monkeypatch.setitem(D.SPLITS, "eigen-test", (tuple(drives), ("test",)))
    monkeypatch.setitem(D.EIGEN_SPLIT_FILES, "test", Remote(
        "https://example.invalid/eigen_test_files_with_gt.txt", sha256=sha(test_list)))  # fmt: skip
    out, runner, mirror = tmp_path / "kitti", CliRunner(), f"{server}/ok"
    result = runner.invoke(app, ["download", "kitti-depth", "--to", str(out), "--mirror", mirror])
    assert result.exit_code == 0, result.output
    args = ["download", "kitti-raw", "--split", "eigen-test", "--to", str(out), "--mirror", mirror]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert not any(p.is_dir() for p in out.iterdir())  # zips only: read in place
    ours, theirs = open_dataset(out, "test"), open_dataset(src, "test")
    assert len(ours) == len(theirs) > 0 and ours.camera == theirs.camera
    for (a_rgb, a_depth), (b_rgb, b_depth) in zip(ours, theirs, strict=True):
        np.testing.assert_array_equal(a_rgb, b_rgb)
        np.testing.assert_array_equal(a_depth, b_depth)
    asked = len(Handler.requests)
    again = runner.invoke(app, args)
    assert again.exit_code == 0, again.output
    assert Handler.requests[asked:] == []  # verified where they lie, nothing fetched again
    files = json.loads((out / "downloads.json").read_text())["files"]
    served = {n: sha(Handler.files[n]) for n in files}
    assert {n: f["sha256"] for n, f in files.items()} == served and len(files) == len(drives) + 3


def test_an_h5_without_hdf5s_signature_and_a_wrong_md5_are_refused(
    server: str, tmp_path: Path
) -> None:
    """nyu.h5 must carry HDF5's signature (at 0 or after a user block: 512, 1024, ...); a
    recorded md5 is checked (the labeled NYU .mat's only record): the right one passes, a
    wrong one is one line and keeps nothing."""
    import h5py

    real = tmp_path / "real.h5"
    with h5py.File(real, "w", userblock_size=512) as f:  # signature at 512, like MATLAB v7.3
        f["x"] = [1.0, 2.0]
    Handler.files.update({"nyu.h5": real.read_bytes(), "kitti.h5": b"\0" * 4096})
    path, _ = fetch(Remote(f"{server}/ok/nyu.h5"), tmp_path / "a")
    assert path.read_bytes() == real.read_bytes()
    with pytest.raises(DownloadError, match="not an HDF5 file"):
        fetch(Remote(f"{server}/ok/kitti.h5"), tmp_path / "b")
    payload = Handler.files["big.bin"]
    md5 = hashlib.md5(payload).hexdigest()
    assert fetch(Remote(f"{server}/ok/big.bin", md5=md5), tmp_path / "c")[0].is_file()
    with pytest.raises(DownloadError, match="does not match the recorded") as err:
        fetch(Remote(f"{server}/ok/big.bin", md5="0" * 32), tmp_path / "d")
    assert "\n" not in str(err.value) and not any((tmp_path / "d").iterdir())
