"""DenseDepth model: parameter counts, skips by name, output shapes, offline weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision

from densedepth.depth import MAX_DEPTH, MIN_DEPTH
from densedepth.model import (
    BACKBONES,
    DenseDepth,
    backbone_spec,
    check_input_size,
    count_parameters,
    feature_info,
    imagenet_weights_path,
)
from densedepth.util.errors import ModelError, WeightsNotFoundError

EXPECTED_PARAMS = {"densenet169": 42_657_689, "densenet121": 18_991_425, "densenet201": 57_806_089}


@pytest.fixture(scope="module", params=sorted(BACKBONES))
def model(request: pytest.FixtureRequest) -> DenseDepth:
    torch.manual_seed(0)
    return DenseDepth(request.param).eval()


def test_parameter_counts(model: DenseDepth) -> None:
    assert count_parameters(model) == EXPECTED_PARAMS[model.backbone]


def test_decoder_width_shrinks_the_decoder_only(model: DenseDepth) -> None:
    half = DenseDepth(model.backbone, decoder_width=0.5)
    enc = count_parameters(model.encoder)
    assert count_parameters(half.encoder) == enc
    assert count_parameters(half.decoder) < count_parameters(model.decoder) / 2


def test_skips_are_taken_by_name_with_declared_channels_and_strides(model: DenseDepth) -> None:
    x = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        feats = model.encoder(x)
    info = feature_info(model.backbone)
    assert [row["module"] for row in info] == [
        "relu0",
        "pool0",
        "transition1",
        "transition2",
        "norm5",
    ]
    assert len(feats) == len(info)
    for f, row in zip(feats, info, strict=True):
        assert f.shape[1] == row["channels"]
        assert (64 // f.shape[2], 96 // f.shape[3]) == (row["stride"], row["stride"])
    # Independently: the declared channels are what torchvision's modules produce.
    tv = backbone_spec(model.backbone).builder(weights=None).features
    assert info[2]["channels"] == tv.transition1.conv.out_channels
    assert info[3]["channels"] == tv.transition2.conv.out_channels
    assert info[4]["channels"] == tv.norm5.num_features
    # The skip is exactly that module's output: recompute it by running the modules by hand.
    with torch.no_grad():
        y = x
        for name, module in model.encoder.features.named_children():
            y = module(y)
            if name == "transition1":
                break
    torch.testing.assert_close(feats[2], y)


@pytest.mark.parametrize("size", [(64, 64), (96, 128), (128, 96)])
def test_output_is_half_resolution(model: DenseDepth, size: tuple[int, int]) -> None:
    with torch.no_grad():
        out = model(torch.rand(2, 3, *size))
    assert out.shape == (2, 1, size[0] // 2, size[1] // 2)
    assert torch.isfinite(out).all()


def test_predict_depth_is_metres_in_valid_range(model: DenseDepth) -> None:
    with torch.no_grad():
        d = model.predict_depth(torch.rand(1, 3, 64, 64))
    assert d.shape == (1, 1, 32, 32)
    assert d.min() >= MIN_DEPTH and d.max() <= MAX_DEPTH


def test_normalisation_is_inside_the_model(model: DenseDepth) -> None:
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1).expand(1, 3, 64, 64)
    with torch.no_grad():
        feats = model.encoder.features.conv0(torch.zeros(1, 3, 64, 64))
        model_feats = model.encoder.features.conv0((mean - model.mean) / model.std)
    torch.testing.assert_close(model_feats, feats)
    assert "mean" not in model.state_dict()  # buffers are not persisted, weights stay portable


@pytest.mark.parametrize("size", [(100, 150), (64, 70), (0, 64)])
def test_bad_input_size_says_which_sizes_work(size: tuple[int, int]) -> None:
    with pytest.raises(ModelError, match=r"multiples? of 32") as err:
        check_input_size(*size)
    assert "\n" not in str(err.value)


def test_bad_input_size_in_forward() -> None:
    m = DenseDepth("densenet121", decoder_width=0.25)
    with pytest.raises(ModelError, match=r"100x150 .*height 96 or 128 and width 128 or 160"):
        m(torch.rand(1, 3, 100, 150))
    with pytest.raises(ModelError, match=r"\(N, 3, H, W\)"):
        m(torch.rand(1, 1, 64, 64))


def test_unknown_backbone_lists_valid_ones() -> None:
    with pytest.raises(ModelError, match="densenet169, densenet121"):
        DenseDepth("resnet50")


def _legacy_state_dict(backbone: str) -> dict[str, torch.Tensor]:
    """A torchvision DenseNet state dict with the published files' old key names (norm.1)."""
    torch.manual_seed(1)
    net = backbone_spec(backbone).builder(weights=None)
    out = {}
    for key, value in net.state_dict().items():
        if key.endswith("num_batches_tracked"):
            continue  # the published files predate this counter
        for part in ("norm", "relu", "conv"):
            for i in ("1", "2"):
                key = key.replace(f".{part}{i}.", f".{part}.{i}.")
        out[key] = value
    return out


@pytest.fixture
def hub_dir(tmp_path: Path) -> Path:
    old = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))
    yield tmp_path / "hub"
    torch.hub.set_dir(old)


def test_imagenet_weights_load_from_hub_cache(
    hub_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A cached file whose sha256 starts with the hash in its name loads (torch hub's rule:
    the test's own file, named by its hash as torchvision names its releases)."""
    import hashlib

    import densedepth.model as dm

    assert imagenet_weights_path("densenet121") == (
        hub_dir / "checkpoints" / "densenet121-a639ec97.pth")  # fmt: skip
    state = _legacy_state_dict("densenet121")
    assert any(".norm.1." in k for k in state)
    scratch = tmp_path / "w.pth"
    torch.save(state, scratch)
    prefix = hashlib.sha256(scratch.read_bytes()).hexdigest()[:8]
    monkeypatch.setattr(dm, "weights_url", lambda b: f"https://x.invalid/{b}-{prefix}.pth")
    path = imagenet_weights_path("densenet121")
    path.parent.mkdir(parents=True)
    scratch.rename(path)
    m = DenseDepth("densenet121", weights="imagenet")
    w = m.encoder.features.denseblock1.denselayer1.norm1.weight
    torch.testing.assert_close(w, state["features.denseblock1.denselayer1.norm.1.weight"])
    torch.testing.assert_close(m.encoder.features.conv0.weight, state["features.conv0.weight"])


def test_imagenet_weights_load_from_explicit_file(tmp_path: Path) -> None:
    net = torchvision.models.densenet121(weights=None)  # new-style keys work too
    path = tmp_path / "mine.pth"
    torch.save(net.state_dict(), path)
    m = DenseDepth("densenet121", weights=path)
    torch.testing.assert_close(m.encoder.features.norm5.running_var, net.features.norm5.running_var)


def test_missing_imagenet_weights_error_names_path_and_torch_home(
    hub_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Offline (the environment variable --offline sets): today's one line, nothing fetched."""
    monkeypatch.setenv("DENSEDEPTH_OFFLINE", "1")
    with pytest.raises(WeightsNotFoundError) as err:
        DenseDepth("densenet169", weights="imagenet")
    msg = str(err.value)
    assert str(hub_dir / "checkpoints" / "densenet169-b2777c0a.pth") in msg
    assert "$TORCH_HOME" in msg and "--weights none" in msg and "\n" not in msg
    assert "--offline" in msg and not (hub_dir / "checkpoints").exists()


def test_a_foreign_file_in_the_hub_cache_is_refused_not_loaded(hub_dir: Path) -> None:
    """A state dict saved under torchvision's name fails the hash in that name."""
    path = imagenet_weights_path("densenet121")
    path.parent.mkdir(parents=True)
    torch.save(_legacy_state_dict("densenet121"), path)
    with pytest.raises(
        WeightsNotFoundError, match=r"is refused, not loaded: .*does not start with a639ec97"
    ):
        DenseDepth("densenet121", weights="imagenet")
    assert path.is_file()  # not ours: left where it is


def test_weights_of_the_other_backbone_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "d121.pth"
    torch.save(_legacy_state_dict("densenet121"), path)
    with pytest.raises(WeightsNotFoundError, match=r"not a densenet169|does not fit densenet169"):
        DenseDepth("densenet169", weights=path)


def test_corrupt_or_foreign_weights_file(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(WeightsNotFoundError, match="cannot read weights file"):
        DenseDepth("densenet121", weights=junk)
    other = tmp_path / "other.pth"
    torch.save({"fc.weight": torch.zeros(2, 2)}, other)
    with pytest.raises(WeightsNotFoundError, match="no 'features"):
        DenseDepth("densenet121", weights=other)
    with pytest.raises(WeightsNotFoundError, match="does not exist"):
        DenseDepth("densenet121", weights=tmp_path / "absent.pth")


def test_variant_switches_change_exactly_what_they_say() -> None:
    from densedepth.variant import KERAS_BN_EPS, ModelVariant, preset

    torch.manual_seed(0)
    base = DenseDepth("densenet121", decoder_width=0.125).eval()
    keras = DenseDepth("densenet121", decoder_width=0.125, variant=preset("keras-released")).eval()
    keras.load_state_dict(base.state_dict())  # same weights: only the switches differ
    bns = [m for m in keras.encoder.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and all(m.eps == KERAS_BN_EPS for m in bns)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        # no normalisation inside: the Keras network sees RGB / 255 as it is
        feats = keras.encoder(x)
        # no LeakyReLU after convA: recompute the decoder by hand and compare
        *skips, deepest = feats
        y = keras.decoder.conv_in(torch.relu(deepest))
        for block, skip in zip(keras.decoder.blocks, reversed(skips), strict=True):
            y = torch.nn.functional.interpolate(y, size=skip.shape[-2:], mode="bilinear",
                                                align_corners=True)  # fmt: skip
            y = block.conv_a(torch.cat([y, skip], 1))
            y = torch.nn.functional.leaky_relu(block.conv_b(y), 0.2)
        torch.testing.assert_close(keras(x), keras.decoder.conv_out(y))
        assert not torch.allclose(keras(x), base(x))
        # the depth range: kitti.h5 reads 80 / output over 1..80 m
        kitti = preset("keras-released", "kitti")
        assert (kitti.depth.numerator, kitti.depth.min_depth, kitti.depth.max_depth) == (80, 1, 80)
        km = DenseDepth("densenet121", decoder_width=0.125, variant=kitti).eval()
        km.load_state_dict(base.state_dict())
        target = km(x)
        depth = km.predict_depth(x)
        torch.testing.assert_close(depth, 80.0 / target.clamp(1.0, 80.0))
        assert depth.min() >= 1.0 and depth.max() <= 80.0
    assert ModelVariant.from_dict(kitti.to_dict()) == kitti
    assert ModelVariant.from_dict(None) == ModelVariant() == ModelVariant.from_dict({})
    with pytest.raises(ModelError, match="unknown model variant"):
        preset("keras-2017")
    with pytest.raises(ModelError, match="unknown model variant fields"):
        ModelVariant.from_dict({"normalize_input": True, "dropout": 0.1})
