"""tl_core.backbones: the registry, one stage contract over every backbone, freezing,
weights offline, the packaged EfficientNet-Lite0 ImageNet weights, saved backbones."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tl_core import backbones as bb
from tl_core.backbones import _weights

ROOT = Path(__file__).resolve().parents[1]
from tl_core.backbones.efficientnet_lite import TIMM_ARCH, lite_weights_path, map_lite_state_dict

NAMES = [info.name for info in bb.list_backbones()]
TORCHVISION = ["mobilenet_v3_small", "resnet18", "resnet50", "efficientnet_b0", "convnext_tiny"]


def _images(name: str, n: int = 2, seed: int = 0) -> torch.Tensor:
    """Small normalised-looking inputs: 28×28 for LeNet, 32×32 (the smallest that fits) otherwise."""
    size = 28 if name == "lenet" else 32
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.fixture
def hub_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty torch hub cache (what torch.hub.set_dir does, undone after the test)."""
    d = tmp_path / "hub"
    monkeypatch.setattr(torch.hub, "_hub_dir", str(d))
    return d


# ----------------------------------------------------------------------------- registry
def test_registry_lists_every_backbone_in_order() -> None:
    assert NAMES == ["lenet", "efficientnet_lite0", "mobilenet_v3_small", "resnet18", "resnet50",
                     "efficientnet_b0", "convnext_tiny"]
    for info in bb.list_backbones():
        assert info == bb.get_info(info.name)
        assert info.arch == info.name and info.params > 0 and info.weights
        assert len(info.mean) == len(info.std) == 3 and info.scale > 0


def test_unknown_name_says_which_names_exist() -> None:
    for call in (bb.get_info, bb.create_backbone, lambda n: bb.param_counts(n, 0)):
        with pytest.raises(KeyError) as exc:
            call("resnet19")
        assert isinstance(exc.value, bb.BackboneError)
        message = str(exc.value)
        assert message.startswith("Unknown backbone 'resnet19'")
        assert all(name in message for name in NAMES) and "run:<run_id>" in message
    ok, why = bb.weights_available("resnet19")
    assert not ok and "resnet18" in why


def test_lenet_needs_no_weights() -> None:
    assert bb.weights_available("lenet") == (True, "no pretrained weights: trained from scratch")
    info = bb.get_info("lenet")
    assert info.weights == "none (trained from scratch)"
    assert (info.input_size, info.feature_dim, info.stage_names) == (28, 100, ["conv1", "conv2", "fc"])
    assert bb.create_backbone("lenet", pretrained=True)(torch.zeros(1, 3, 28, 28)).shape == (1, 100)


# ----------------------------------------------------- the contract, over every backbone
@pytest.mark.parametrize("name", NAMES)
def test_features_have_the_advertised_width(name: str) -> None:
    info = bb.get_info(name)
    backbone = bb.create_backbone(name, pretrained=False).eval()
    with torch.no_grad():
        out = backbone(_images(name))
    assert out.shape == (2, info.feature_dim) == (2, backbone.num_features)
    assert len(backbone.stages) == len(info.stage_names)
    assert backbone.info.stage_names == info.stage_names
    # Every parameter lives in a stage, and the count matches the registry's.
    assert backbone.info.params == info.params == sum(p.numel() for p in backbone.stages.parameters())
    assert sum(p.numel() for p in backbone.parameters()) == info.params


@pytest.mark.parametrize("name", NAMES)
def test_forward_from_continues_forward_until(name: str) -> None:
    backbone = bb.create_backbone(name, pretrained=False).eval()
    x = _images(name)
    with torch.no_grad():
        full = backbone(x)
        for k in range(len(backbone.stages) + 1):
            h = backbone.forward_until(x, k)
            kept = h.clone()
            torch.testing.assert_close(backbone.forward_from(h, k), full, rtol=1e-5, atol=1e-5)
            assert torch.equal(h, kept), f"forward_from({k}) changed its input (a cached tensor) in place"
    with pytest.raises(ValueError, match="stages"):
        backbone.forward_until(x, len(backbone.stages) + 1)


@pytest.mark.parametrize("name", NAMES)
def test_freezing_fixes_weights_and_batchnorm_but_trains_the_rest(name: str) -> None:
    torch.manual_seed(0)
    backbone = bb.create_backbone(name, pretrained=False)
    n = len(backbone.stages)
    k = max(1, n // 2)
    bb.freeze_stages(backbone, k)
    backbone.train()  # the trainer's call: frozen stages must stay in eval mode
    assert all(not m.training for s in backbone.stages[:k] for m in s.modules())
    assert all(m.training for s in backbone.stages[k:] for m in s.modules())
    before = {key: v.clone() for key, v in backbone.state_dict().items()}

    trainable = [p for p in backbone.parameters() if p.requires_grad]
    opt = torch.optim.SGD(trainable, lr=0.1)
    feats = backbone(_images(name, n=4))
    (feats * torch.randn_like(feats)).sum().backward()
    for i, stage in enumerate(backbone.stages):
        for pname, p in stage.named_parameters():
            if i < k:
                assert not p.requires_grad and p.grad is None, f"stage {i} {pname}"
            else:
                assert p.requires_grad and p.grad is not None, f"stage {i} {pname} got no gradient"
    opt.step()

    after = backbone.state_dict()
    frozen_keys = [key for key in before if int(key.split(".")[1]) < k]  # keys are stages.<i>.…
    assert frozen_keys
    for key in frozen_keys:  # weights and BatchNorm running statistics alike
        assert torch.equal(before[key], after[key]), f"frozen {key} moved"
    for pname, p in backbone.named_parameters():
        if p.requires_grad:
            assert not torch.equal(before[pname], p.detach()), f"trainable {pname} did not move"
    bn_after_k = [key for key in before if key.endswith("running_mean") and int(key.split(".")[1]) >= k]
    assert all(not torch.equal(before[key], after[key]) for key in bn_after_k)  # trainable BN still adapts


@pytest.mark.parametrize("name", NAMES)
def test_param_counts_split_the_total(name: str) -> None:
    info = bb.get_info(name)
    backbone = bb.create_backbone(name, pretrained=False)
    frozen_so_far = 0
    for k in range(len(info.stage_names) + 1):
        trainable, frozen = bb.param_counts(name, k)
        assert trainable + frozen == info.params
        assert frozen >= frozen_so_far
        frozen_so_far = frozen
        bb.freeze_stages(backbone, k)
        assert (trainable, frozen) == bb.param_counts(backbone, k)
        assert trainable == sum(p.numel() for p in backbone.parameters() if p.requires_grad)
    assert bb.param_counts(name, 0) == (info.params, 0)


def test_freezing_too_many_stages_says_how_many_there_are() -> None:
    backbone = bb.create_backbone("lenet")
    for k in (4, -1):
        with pytest.raises(ValueError, match=r"lenet has 3 stages \(conv1, conv2, fc\).*0 to 3"):
            bb.freeze_stages(backbone, k)
    with pytest.raises(ValueError, match="resnet18 has 5 stages"):
        bb.param_counts("resnet18", 6)
    with pytest.raises(ValueError, match="cannot freeze 1.5"):
        bb.freeze_stages(backbone, 1.5)
    bb.freeze_stages(backbone, np.int64(2))  # integers from numpy or JSON are fine
    assert backbone.frozen_stages == 2


def test_freezing_fewer_stages_unfreezes_the_rest() -> None:
    backbone = bb.create_backbone("resnet18", pretrained=False)
    bb.freeze_stages(backbone, 4)
    bb.freeze_stages(backbone, 1)
    backbone.train()
    assert [all(p.requires_grad for p in s.parameters()) for s in backbone.stages] == [False] + [True] * 4
    assert [s.training for s in backbone.stages] == [False] + [True] * 4
    backbone.eval()
    assert not any(s.training for s in backbone.stages)


# ---------------------------------------------------------------------------- heads
@pytest.mark.parametrize("kind", bb.HEAD_KINDS)
def test_heads_map_features_to_classes(kind: str) -> None:
    head = bb.make_head(100, 10, kind=kind, hidden=32, dropout=0.5)
    assert head(torch.randn(4, 100)).shape == (4, 10)
    assert any(isinstance(m, nn.Dropout) for m in head.modules())
    assert not any(isinstance(m, nn.Dropout) for m in bb.make_head(100, 10, kind=kind, dropout=0.0).modules())


def test_unknown_head_kind_lists_the_kinds() -> None:
    with pytest.raises(ValueError, match="linear, mlp"):
        bb.make_head(100, 10, kind="transformer")


# --------------------------------------------------------- torchvision weights, offline
def test_missing_torchvision_weights_name_the_file_to_place(hub_dir: Path) -> None:
    path = hub_dir / "checkpoints" / "resnet18-f37072fd.pth"
    ok, why = bb.weights_available("resnet18")
    assert not ok and str(path) in why
    with pytest.raises(bb.BackboneError) as exc:
        bb.create_backbone("resnet18", pretrained=True)
    assert str(path) in str(exc.value)
    assert "https://download.pytorch.org/models/resnet18-f37072fd.pth" in str(exc.value)
    assert not path.exists()


def test_torchvision_weights_in_the_hub_cache_load_offline(hub_dir: Path) -> None:
    from torchvision.models import get_model

    torch.manual_seed(1)
    reference = get_model("mobilenet_v3_small", weights=None).eval()
    path = _weights.weights_path("mobilenet_v3_small")
    path.parent.mkdir(parents=True)
    torch.save(reference.state_dict(), path)
    assert bb.weights_available("mobilenet_v3_small")[0]

    backbone = bb.create_backbone("mobilenet_v3_small", pretrained=True)
    x = _images("mobilenet_v3_small")
    with torch.no_grad():
        torch.testing.assert_close(bb.imagenet_logits(backbone, x), reference(x))


def test_damaged_weights_file_says_to_replace_it(hub_dir: Path) -> None:
    path = _weights.weights_path("resnet18")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(bb.BackboneError, match="cannot read the weights file"):
        bb.create_backbone("resnet18")


def test_download_fails_fast_when_offline(hub_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Port 9 on this machine refuses the connection, as an unreachable host would.
    monkeypatch.setattr(_weights, "weights_url", lambda arch: "http://127.0.0.1:9/resnet18-f37072fd.pth")
    start = time.monotonic()
    with pytest.raises(bb.BackboneError, match="Could not download"):
        bb.create_backbone("resnet18", allow_download=True)
    assert time.monotonic() - start < _weights.DOWNLOAD_TIMEOUT_S + 5
    assert not any((hub_dir / "checkpoints").iterdir())  # no partial file left behind


def test_download_checks_the_hash_in_the_file_name(tmp_path: Path) -> None:
    import hashlib

    src = tmp_path / "weights.bin"
    src.write_bytes(b"weights")
    digest = hashlib.sha256(b"weights").hexdigest()[:8]
    good, bad = tmp_path / "out" / f"net-{digest}.pth", tmp_path / "out" / "net-00000000.pth"
    _weights.download(src.as_uri(), good)
    assert good.read_bytes() == b"weights"
    with pytest.raises(bb.BackboneError, match="SHA-256"):
        _weights.download(src.as_uri(), bad)
    assert sorted(p.name for p in good.parent.iterdir()) == [good.name]


# ----------------------------------------------- EfficientNet-Lite0, packaged ImageNet weights
@pytest.fixture(scope="module")
def lite0() -> bb.Backbone:
    return bb.create_backbone("efficientnet_lite0", pretrained=True).eval()


def test_every_packaged_lite0_tensor_lands_in_timm() -> None:
    import timm

    src = torch.load(lite_weights_path(), map_location="cpu", weights_only=True)
    assert len(src) == 296
    model = timm.create_model(TIMM_ARCH, pretrained=False)
    target = model.state_dict()
    mapped = map_lite_state_dict(src, [len(s) for s in model.blocks])
    assert len(mapped) == 296 and set(mapped) == set(target)
    assert all(mapped[k].shape == target[k].shape for k in target)
    assert {id(v) for v in mapped.values()} == {id(v) for v in src.values()}  # renamed, not altered
    result = model.load_state_dict(mapped, strict=True)
    assert not result.missing_keys and not result.unexpected_keys


def test_lite0_backbone_holds_the_packaged_weights(lite0: bb.Backbone) -> None:
    src = torch.load(lite_weights_path(), map_location="cpu", weights_only=True)
    ours = {k: v for k, v in lite0.state_dict().items()}
    assert len(ours) == 296 - 2  # the ImageNet classifier (_fc) sits beside the backbone
    assert torch.equal(ours["stages.0.0.weight"], src["_conv_stem.weight"])
    assert torch.equal(ours["stages.8.1.running_var"], src["_bn1.running_var"])
    assert torch.equal(lite0.imagenet_head.weight, src["_fc.weight"])
    assert bb.weights_available("efficientnet_lite0")[0]


def _imagenet_input(image: np.ndarray, info: bb.BackboneInfo) -> torch.Tensor:
    """Shorter side to 256 (bilinear), centre crop 224, then the backbone's normalisation."""
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float()
    h, w = x.shape[-2:]
    s = 256 / min(h, w)
    x = F.interpolate(x, size=(round(h * s), round(w * s)), mode="bilinear", align_corners=False, antialias=True)
    top, left = (x.shape[-2] - 224) // 2, (x.shape[-1] - 224) // 2
    x = x[..., top:top + 224, left:left + 224]
    mean = torch.tensor(info.mean).view(1, 3, 1, 1)
    std = torch.tensor(info.std).view(1, 3, 1, 1)
    return (x / info.scale - mean) / std


def test_lite0_recognises_a_cat_and_an_espresso(lite0: bb.Backbone) -> None:
    from skimage import data

    x = torch.cat([_imagenet_input(data.chelsea(), lite0.info), _imagenet_input(data.coffee(), lite0.info)])
    top = bb.imagenet_logits(lite0, x).argmax(1).tolist()
    assert 281 <= top[0] <= 285, f"chelsea classified as {top[0]}, not a cat (281-285)"
    assert top[1] == 967, f"coffee classified as {top[1]}, not espresso (967)"


def test_imagenet_logits_need_pretrained_weights() -> None:
    with pytest.raises(bb.BackboneError, match="without pretrained"):
        bb.imagenet_logits(bb.create_backbone("efficientnet_lite0", pretrained=False), torch.zeros(1, 3, 32, 32))


# ------------------------------------------------------------------ saved backbones
def test_saved_backbone_round_trips_through_run_id(tl_home: Path) -> None:
    torch.manual_seed(0)
    backbone = bb.create_backbone("mobilenet_v3_small", pretrained=False)
    bb.freeze_stages(backbone, 2)
    backbone.train()
    backbone(_images("mobilenet_v3_small", n=4))  # move the trainable BatchNorm statistics
    bb.save_backbone(backbone, tl_home / "runs" / "r123")
    assert sorted(p.name for p in (tl_home / "runs" / "r123").iterdir()) == ["backbone.json", "backbone.safetensors"]

    loaded = bb.create_backbone("run:r123")
    x = _images("mobilenet_v3_small", seed=3)
    with torch.no_grad():
        assert torch.equal(loaded.eval()(x), backbone.eval()(x))
    info = bb.get_info("run:r123")
    assert loaded.info == info
    assert (info.name, info.arch, info.stage_names) == ("run:r123", "mobilenet_v3_small",
                                                       bb.get_info("mobilenet_v3_small").stage_names)
    assert bb.weights_available("run:r123")[0]
    assert bb.param_counts("run:r123", 2) == bb.param_counts("mobilenet_v3_small", 2)
    assert [i.name for i in bb.list_saved_backbones()] == ["run:r123"]
    assert "run:r123" not in NAMES and "run:r123" not in [i.name for i in bb.list_backbones()]

    # A backbone loaded from a run saves as its architecture again.
    bb.save_backbone(loaded, tl_home / "runs" / "r124")
    assert bb.get_info("run:r124").arch == "mobilenet_v3_small"


def test_missing_saved_backbone_says_where_it_looked(tl_home: Path) -> None:
    with pytest.raises(bb.BackboneError, match=str(tl_home / "runs" / "nope")):
        bb.create_backbone("run:nope")
    assert not bb.weights_available("run:nope")[0]
    with pytest.raises(bb.BackboneError, match="not a valid saved backbone"):
        bb.create_backbone("run:../../etc")
    assert bb.list_saved_backbones() == []


def test_the_torchvision_weights_each_backbone_names_are_torchvisions_default_and_listing_imports_no_torchvision():
    # the names are written in tl_core/backbones/torchvision_nets.py so that a training process of a run that
    # never uses torchvision does not import it (and torch._dynamo with it): they must stay torchvision's own
    from torchvision.models import get_model_weights

    from tl_core.backbones import get_info

    for arch in ("mobilenet_v3_small", "resnet18", "resnet50", "efficientnet_b0", "convnext_tiny"):
        assert f"torchvision {get_model_weights(arch).DEFAULT} (" in get_info(arch).weights, arch
    code = "import sys, tl_core.backbones, tl_core.trainer; print('torchvision' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.stdout.strip() == "False", out.stderr[-500:]
