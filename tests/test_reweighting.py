"""Sample re-weighting (KMM, KLIEP) on the mixture preset: MNIST with 10 % MNIST-M images as the source,
MNIST-M as the target.

The estimators are checked on real images (7×7 pixel features): KMM's weights satisfy the constraints
of its quadratic program and KLIEP's are a density ratio (non-negative, mean 1 over the source); both
give the MNIST-M share of the source more weight than the MNIST digits. Tiny real runs show that the
weights reach the loss and are kept with the run, and AppTest that Home, Setup and the Monitor show
the preset and the weights.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from tl_core import data as tld
from tl_core import trainer
from tl_core.data.mixture import is_mnist_m, mnist_m_train_indices
from tl_core.methods import validate_params
from tl_core.methods._reweight import PIXEL_SIDE, effective_sample_size
from tl_core.methods.kliep import fit_alpha, kliep_weights
from tl_core.methods.kmm import kmm_weights, paper_epsilon
from tl_core.recorder import StoreRecorder
from tl_core.store import RunStore
from tl_ui import keys

from _tiny import tiny_config
from test_pages import RecordingManager, _use_manager, open_app, texts

MIX = "mnist-mix-mnist-m"


def pixels(images: np.ndarray) -> np.ndarray:
    """The 'pixels' features: 28×28 images averaged down to 7×7, three channels, in [0, 1]."""
    x = np.asarray(images, dtype=np.float64) / 255.0
    if x.shape[-1] == 1:
        x = np.repeat(x, 3, axis=-1)
    k = x.shape[1] // PIXEL_SIDE
    return x.reshape(len(x), PIXEL_SIDE, k, PIXEL_SIDE, k, 3).mean((2, 4)).reshape(len(x), -1)


@pytest.fixture(scope="module")
def mixture() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source features (800 images of the mixture), which of them are MNIST-M, target features (600)."""
    src = tld.load_split("mnist-with-mnist-m", "train", max_samples=800, seed=0)
    tgt = tld.load_split("mnist-m", "train", max_samples=600, seed=0)
    return pixels(src.images), is_mnist_m(src.images), pixels(tgt.images)


# ------------------------------------------------------------------ the preset
def test_mixture_preset_loads_with_mnist_m_images_disjoint_from_the_target_test_split():
    p = tld.PRESETS[MIX]
    assert "covariate shift" in p.title and "re-weighting" in p.description
    train, test = tld.load_split(p.source, "train"), tld.load_split(p.source, "test")
    target_test = tld.load_split(p.target, "test")
    tld.check_pair(train, tld.load_split(p.target, "train", max_samples=20))
    assert is_mnist_m(train.images).sum() == 400 and is_mnist_m(test.images).sum() == 100
    assert np.bincount(train.labels[is_mnist_m(train.images)], minlength=10).tolist() == [40] * 10
    assert len(np.intersect1d(mnist_m_train_indices("train"), mnist_m_train_indices("test"))) == 0

    def hashes(images: np.ndarray) -> set[str]:
        return {hashlib.sha1(np.ascontiguousarray(im).tobytes()).hexdigest() for im in images}
    src_colour = hashes(train.images[is_mnist_m(train.images)]) | hashes(test.images[is_mnist_m(test.images)])
    assert len(src_colour) == 500
    assert not src_colour & hashes(target_test.images)  # no target test image is a labelled source image
    assert not is_mnist_m(train.images[:4000]).any()  # the MNIST part is grey (three equal channels)


# ------------------------------------------------------------------ KMM
@pytest.mark.parametrize("bound, eps, max_qp", [(1000.0, None, 2000), (4.0, 0.05, 2000), (1000.0, None, 300)])
def test_kmm_weights_satisfy_the_constraints_and_up_weight_the_target_like_images(mixture, bound, eps, max_qp):
    xs, colour, xt = mixture
    w, info = kmm_weights(xs, xt, bound=bound, eps=eps, max_qp=max_qp, rng=np.random.default_rng(0))
    n = len(xs)
    assert w.shape == (n,) and np.all(w >= 0) and np.all(w <= bound + 1e-9)
    assert len(info["parts"]) == -(-n // max_qp)
    for idx, e in info["parts"]:  # each QP meets |Σβ − m| ≤ mε for its own m; hence the whole set does too
        m = len(idx)
        assert e == pytest.approx(paper_epsilon(m) if eps is None else eps)
        assert abs(w[idx].sum() - m) <= m * e + 1e-6 * m
    e_all = paper_epsilon(n) if eps is None else eps
    assert abs(w.sum() - n) <= n * e_all + 1e-6 * n
    assert w[colour].mean() > 5 * w[~colour].mean()  # the MNIST-M share looks like the target
    if bound < 10:
        assert np.isclose(w.max(), bound, rtol=1e-3)  # the bound binds: 10 % MNIST-M would want about 10


def test_kmm_with_a_tight_sum_keeps_the_mean_weight_one(mixture):
    xs, _, xt = mixture
    w, _ = kmm_weights(xs[:300], xt, eps=1e-4, rng=np.random.default_rng(1))
    assert w.mean() == pytest.approx(1.0, abs=2e-4)


# ------------------------------------------------------------------ KLIEP
def test_kliep_weights_are_a_density_ratio_that_up_weights_the_target_like_images(mixture):
    xs, colour, xt = mixture
    w, info = kliep_weights(xs, xt, centres=100, folds=5, rng=np.random.default_rng(0))
    assert w.shape == (len(xs),) and np.all(w >= 0)
    assert w.mean() == pytest.approx(1.0, abs=1e-6)  # (1/m) Σ ŵ(x_i) = 1 over the source
    assert w[colour].mean() > 3 * w[~colour].mean()
    scores = info["scores"]
    assert len(scores) > 1 and info["width"] == max(scores, key=scores.get)  # chosen by cross-validation
    assert len(set(round(s, 6) for s in scores.values())) > 1  # the width matters


def test_kliep_gradient_ascent_raises_the_target_likelihood_under_its_constraints():
    rng = np.random.default_rng(0)
    a = rng.random((200, 30)) ** 3
    b = rng.random(30) * 0.5 + 0.1
    alpha = fit_alpha(a, b)
    start = np.full(30, 1.0 / b.sum())  # the uniform α meeting bᵀα = 1
    assert np.all(alpha >= 0) and alpha @ b == pytest.approx(1.0)
    assert np.mean(np.log(a @ alpha)) > np.mean(np.log(a @ start)) + 0.05


# ------------------------------------------------------------------ shared
def test_effective_sample_size():
    assert effective_sample_size(np.ones(7)) == pytest.approx(7)
    assert effective_sample_size(np.array([5.0, 0, 0, 0])) == pytest.approx(1)
    assert effective_sample_size(np.array([2.0, 2, 0, 0])) == pytest.approx(2)
    assert effective_sample_size(np.array([3.0, 1])) == pytest.approx(16 / 10)
    assert effective_sample_size(10 * np.array([3.0, 1])) == pytest.approx(16 / 10)  # scale-free


def test_saved_backbone_features_need_a_saved_backbone_name():
    assert validate_params("kmm", {"weight_features": "saved"})[0].startswith("method.params.saved_backbone")
    assert "not a saved backbone name" in validate_params("kliep", {"weight_features": "saved",
                                                                    "saved_backbone": "../etc"})[0]
    assert validate_params("kliep", {"weight_features": "saved", "saved_backbone": "run:abc-1"}) == []
    assert validate_params("kmm", {"weight_features": "pixels", "saved_backbone": ""}) == []


# ------------------------------------------------------------------ tiny real runs
def _mix_config(method: str, **params):
    cfg = tiny_config(method)
    cfg.data.source = "mnist-with-mnist-m"
    cfg.method.params.update(params)
    return cfg


def test_kmm_run_weights_reach_the_loss_and_are_kept_with_the_run(tl_home, monkeypatch):
    import torch

    from tl_core.methods import finetune

    seen: list[tuple] = []
    original = finetune.weighted_cross_entropy

    def spy(logits, y, w):
        seen.append((logits.detach(), y, None if w is None else w.detach()))
        return original(logits, y, w)
    monkeypatch.setattr(finetune, "weighted_cross_entropy", spy)
    store = RunStore(tl_home)
    cfg = _mix_config("kmm", unweighted_start=0.5)
    run_id = store.create_run(cfg)
    recorder = StoreRecorder(store, run_id)
    out = trainer.run(cfg, recorder)
    assert out["status"] == "completed"
    w = store.load_weights(run_id)
    imgs = tld.load_split(cfg.data.source, "train", max_samples=cfg.data.max_train, seed=cfg.seed)
    assert w is not None and w.shape == (len(imgs),) and w.mean() == pytest.approx(1.0, abs=1e-4)
    colour = is_mnist_m(imgs.images)
    assert 10 < colour.sum() < 50 and w[colour].mean() > 3 * w[~colour].mean()
    # 8 steps: the first half (unweighted start 0.5) plain, the rest weighted by the saved weights
    assert [sw is not None for _, _, sw in seen] == [False] * 4 + [True] * 4
    assert [r["weighted"] for r in store.step_metrics(run_id).to_dict("records")] == [0.0] * 4 + [1.0] * 4
    logits, y, sw = seen[4]
    assert sw.std() > 0.1  # not all equal
    weighted = float(original(logits, y, sw))
    plain_ce = float(torch.nn.functional.cross_entropy(logits, y))
    assert abs(weighted - plain_ce) > 1e-3


def test_kliep_run_trains_from_the_config_with_a_saved_backbones_features(tl_home):
    store = RunStore(tl_home)
    first = _mix_config("kliep", kliep_centres=50)
    first_id = store.create_run(first)
    assert trainer.run(first, StoreRecorder(store, first_id))["status"] == "completed"
    w = store.load_weights(first_id)
    assert w is not None and len(w) == 256 and np.all(w >= 0) and w.mean() == pytest.approx(1.0, abs=1e-4)
    # A second run weights its images with the backbone the first one trained (saved as run:<id>).
    cfg = _mix_config("kliep", kliep_centres=50, weight_features="saved", saved_backbone=f"run:{first_id}")
    assert cfg.validate() == []
    run_id = store.create_run(cfg)
    assert trainer.run(cfg, StoreRecorder(store, run_id))["status"] == "completed"
    w2 = store.load_weights(run_id)
    assert w2 is not None and len(w2) == 256 and not np.allclose(w2, w)


# ------------------------------------------------------------------ pages
def test_home_and_setup_offer_the_mixture_preset(tl_home, monkeypatch):
    _use_manager(monkeypatch, RecordingManager(RunStore(tl_home)))
    at = open_app()
    assert tld.PRESETS[MIX].title in texts(at)
    button = at.button(key=keys.HOME_RUN_PREFIX + MIX)
    assert button.label == "Run demo" and "Trains source only then KMM then KLIEP" in button.help
    at.switch_page(keys.PAGE_SETUP).run()
    assert MIX in at.selectbox(key=keys.SETUP_PRESET).options or \
        tld.PRESETS[MIX].title in at.selectbox(key=keys.SETUP_PRESET).options


def test_monitor_shows_the_weight_histogram_ess_and_the_extreme_images(tl_home, monkeypatch):
    store = RunStore(tl_home)
    _use_manager(monkeypatch, RecordingManager(store))
    cfg = _mix_config("kmm")
    run_id = store.create_run(cfg)
    store.set_status(run_id, "running")
    store.set_status(run_id, "completed")
    w = np.full(256, 0.5)
    w[:8] = 16.5  # ESS = (Σw)² / Σw² = 256² / (8·16.5² + 248·0.5²) = 65536 / 2240 ≈ 29.3
    store.save_weights(run_id, w)
    at = open_app(keys.PAGE_MONITOR)
    body = texts(at)
    assert "Training image weights" in body and "Most weighted training images" in body
    ess = [m for m in at.metric if m.label == "Effective sample size"]
    assert ess and ess[0].value == "29 of 256"
    charts = [c for c in at.get("plotly_chart")]
    assert any("Weights of the 256 training images" in c.proto.spec for c in charts)
    rows = [im.captions for im in at.image if len(im.captions) == 10]
    assert rows[:2] == [["16.5"] * 8 + ["0.5"] * 2, ["0.5"] * 10]  # most weighted first, then the least
    assert not at.exception
