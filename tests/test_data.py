"""Tests of tl_core.data: built-in sets, image folders, torchvision sets offline, presets, transforms."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tl_core import data as tld
from tl_core.data import builtin, folder, mnistm, syndigits, tvsets
from tl_core.data import DataError, ImageSet

DIGITS = [str(d) for d in range(10)]
BUILTIN_SHAPES = {
    "mnist": {"train": (4000, 28, 28, 1), "test": (1000, 28, 28, 1)},
    "mnist-m": {"train": (4000, 28, 28, 3), "test": (1000, 28, 28, 3)},
    "uci-digits": {"train": (1438, 8, 8, 1), "test": (359, 8, 8, 1)},
    "syn-digits": {"train": (5000, 32, 32, 3), "test": (1000, 32, 32, 3)},
    "mnist-with-mnist-m": {"train": (4400, 28, 28, 3), "test": (1100, 28, 28, 3)},
}


# ---------------------------------------------------------------- built-in sets

@pytest.mark.parametrize("name", sorted(BUILTIN_SHAPES))
@pytest.mark.parametrize("split", ["train", "test"])
def test_builtin_shapes_dtypes_labels(name: str, split: str) -> None:
    s = tld.load_split(name, split)
    assert isinstance(s, ImageSet)
    assert s.images.shape == BUILTIN_SHAPES[name][split]
    assert s.images.dtype == np.uint8 and s.labels.dtype == np.int64
    assert s.labels.shape == (len(s),)
    assert s.classes == DIGITS
    assert s.name == name and s.skipped == 0
    counts = np.bincount(s.labels, minlength=10)
    assert len(counts) == 10 and counts.min() > 0.7 * counts.mean()  # every digit, about balanced
    assert s.images.max() > 200  # pixels use the 0..255 range
    assert not s.images.flags.writeable and s.labels.flags.writeable  # shared cache is protected


def test_builtin_is_cached() -> None:
    a, b = tld.load_split("mnist-m", "train"), tld.load_split("mnist-m", "train")
    assert a.images is b.images


def test_list_datasets_names_and_kinds() -> None:
    infos = {d.name: d for d in tld.list_datasets()}
    for n in BUILTIN_SHAPES:
        assert infos[n].offline and infos[n].kind == "builtin"
    assert infos["folder"].kind == "folder"
    for n in ("tv-mnist", "usps", "svhn", "cifar10", "stl10"):
        assert infos[n].kind == "torchvision" and not infos[n].offline
    assert all(d.title and d.description for d in infos.values())


def test_mnist_train_test_disjoint() -> None:
    tr, te = builtin.mnist_indices()
    assert len(np.intersect1d(tr, te)) == 0 and len(np.union1d(tr, te)) == 5000
    train, test = tld.load_split("mnist", "train"), tld.load_split("mnist", "test")
    train_rows = {img.tobytes() for img in train.images}
    assert not any(img.tobytes() in train_rows for img in test.images)
    assert np.array_equal(np.bincount(train.labels), [400] * 10)
    assert np.array_equal(np.bincount(test.labels), [100] * 10)


def test_uci_digits_scaled_to_255() -> None:
    s = tld.load_split("uci-digits", "train")
    assert s.images.max() == 255 and s.images.min() == 0


def test_mnist_m_deterministic_and_colourful() -> None:
    cached = tld.load_split("mnist-m", "test").images
    again, _ = mnistm.mnist_m.__wrapped__("test")
    assert np.array_equal(cached, again)
    train = tld.load_split("mnist-m", "train").images
    assert not np.array_equal(train[:1000], cached)  # other digits and crops
    channel_std = cached.astype(np.float32).std(axis=-1)  # per pixel, across R, G, B
    assert channel_std.mean() > 5.0
    assert (channel_std > 0).mean() > 0.5


def test_mnist_m_labels_follow_mnist() -> None:
    for split in ("train", "test"):
        assert np.array_equal(tld.load_split("mnist-m", split).labels, tld.load_split("mnist", split).labels)


def test_mnist_m_blend_is_abs_difference() -> None:
    digits = np.array([[[0, 200], [100, 255]]], dtype=np.uint8)
    patches = np.full((1, 2, 2, 3), 30, dtype=np.uint8)
    out = mnistm.blend(digits, patches)
    assert out.dtype == np.uint8
    assert np.array_equal(out[0, :, :, 0], [[30, 225], [30, 225]])


def _grad(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float32)
    return np.abs(np.diff(x, axis=-1))[..., :-1, :] + np.abs(np.diff(x, axis=-2))[..., :, :-1]


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel() - a.mean(), b.ravel() - b.mean()
    return float((a * b).sum() / (np.sqrt((a * a).sum() * (b * b).sum()) + 1e-9))


def test_mnist_m_digit_structure_matches_mnist() -> None:
    m = tld.load_split("mnist-m", "test").images[:200].astype(np.float32).mean(axis=-1)
    d = (tld.load_split("mnist", "test").images[:200, ..., 0] > 127).astype(np.float32)
    same = np.mean([_corr(_grad(m[i]), _grad(d[i])) for i in range(200)])
    other = np.mean([_corr(_grad(m[i]), _grad(d[(i + 1) % 200])) for i in range(200)])
    assert same > 0.3 and same > other + 0.25


def test_syn_digits_deterministic_and_varied() -> None:
    a_img, a_lab = syndigits.render(60, seed=7)
    b_img, b_lab = syndigits.render(60, seed=7)
    assert np.array_equal(a_img, b_img) and np.array_equal(a_lab, b_lab)
    c_img, _ = syndigits.render(60, seed=8)
    assert not np.array_equal(a_img, c_img)
    s = tld.load_split("syn-digits", "test")
    assert s.images.astype(np.float32).std(axis=-1).mean() > 3.0  # colour, not grey
    # Digit and background differ: every image has real contrast.
    lum = (s.images.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)).reshape(len(s), -1)
    assert (lum.max(1) - lum.min(1)).min() > 40


# ---------------------------------------------------------------- max_samples, errors

def test_max_samples_stratified_and_deterministic() -> None:
    a = tld.load_split("mnist", "train", max_samples=100, seed=1)
    b = tld.load_split("mnist", "train", max_samples=100, seed=1)
    c = tld.load_split("mnist", "train", max_samples=100, seed=2)
    assert len(a) == 100 and a.images.shape == (100, 28, 28, 1)
    assert np.array_equal(a.images, b.images) and np.array_equal(a.labels, b.labels)
    assert not np.array_equal(a.images, c.images)
    assert np.array_equal(np.bincount(a.labels, minlength=10), [10] * 10)
    odd = tld.load_split("uci-digits", "test", max_samples=37, seed=0)
    assert len(odd) == 37 and len(np.unique(odd.labels)) == 10
    assert len(tld.load_split("uci-digits", "test", max_samples=10**6)) == 359


@pytest.mark.parametrize("bad", [0, -3, 2.5, "10", True])
def test_max_samples_refused(bad: object) -> None:
    with pytest.raises(DataError, match="max_samples"):
        tld.load_split("mnist", "train", max_samples=bad)  # type: ignore[arg-type]


def test_unknown_name_and_split() -> None:
    with pytest.raises(DataError, match="Unknown data set 'nope'.*mnist-m"):
        tld.load_split("nope", "train")
    with pytest.raises(DataError, match="split"):
        tld.load_split("mnist", "validation")


def test_imageset_validates() -> None:
    with pytest.raises(DataError, match="uint8"):
        ImageSet(images=np.zeros((2, 4, 4, 3), np.float32), labels=np.zeros(2), classes=["a"], name="x")
    with pytest.raises(DataError, match="C 1 or 3"):
        ImageSet(images=np.zeros((2, 4, 4, 2), np.uint8), labels=np.zeros(2), classes=["a"], name="x")
    with pytest.raises(DataError, match="labels"):
        ImageSet(images=np.zeros((2, 4, 4, 3), np.uint8), labels=np.zeros(3), classes=["a"], name="x")
    s = ImageSet(images=np.zeros((2, 4, 4, 3), np.uint8), labels=[0, 1], classes=["a", "b"], name="x")
    assert s.labels.dtype == np.int64 and len(s) == 2 and s.num_classes == 2


# ---------------------------------------------------------------- presets

def test_presets() -> None:
    assert set(tld.PRESETS) == {"mnist-mnist-m", "mnist-uci-digits", "uci-digits-mnist", "syn-digits-mnist",
                                "mnist-mix-mnist-m"}
    names = {d.name for d in tld.list_datasets()}
    for key, p in tld.PRESETS.items():
        assert p.key == key and p.title and p.description
        assert p.source in names and p.target in names
        tld.check_pair(tld.load_split(p.source, "train", max_samples=20),
                       tld.load_split(p.target, "train", max_samples=20))


def _set(classes: list[str], name: str = "x") -> ImageSet:
    n = len(classes)
    return ImageSet(images=np.zeros((n, 4, 4, 3), np.uint8), labels=np.arange(n), classes=classes, name=name)


def test_check_pair_lists_differences() -> None:
    with pytest.raises(DataError) as e:
        tld.check_pair(_set(["cat", "dog", "fox"], "src"), _set(["cat", "dog", "owl"], "tgt"))
    msg = str(e.value)
    assert "only in the source" in msg and "fox" in msg and "only in the target" in msg and "owl" in msg
    with pytest.raises(DataError, match="different order"):
        tld.check_pair(_set(["a", "b"]), _set(["b", "a"]))
    aligned = tld.align_classes(_set(["b", "a"]), ["a", "b"])
    assert aligned.classes == ["a", "b"] and aligned.labels.tolist() == [1, 0]


# ---------------------------------------------------------------- image folders

def _save(path: Path, img: Image.Image, **kw: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, **kw)


def _rgb(seed: int, size: tuple[int, int] = (40, 30)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


@pytest.fixture
def image_tree(tmp_path: Path) -> Path:
    """cats: 6 good images in mixed modes + a truncated PNG; dogs: 5 good + a fake JPEG + a text file."""
    root = tmp_path / "pets"
    cats, dogs = root / "cats", root / "dogs"
    _save(cats / "rgb.png", _rgb(1))
    _save(cats / "grey.png", _rgb(2).convert("L"))
    rgba = _rgb(3).convert("RGBA")
    rgba.putalpha(128)
    _save(cats / "rgba.png", rgba)
    pal = _rgb(4).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    pal.info["transparency"] = 0
    _save(cats / "palette.png", pal, transparency=0)
    deep = np.tile(np.linspace(0, 4000, 32, dtype=np.uint16), (32, 1))
    _save(cats / "sixteen.png", Image.fromarray(deep))  # mode I;16
    big = Image.linear_gradient("L").resize((3000, 3000)).convert("RGB")
    _save(cats / "huge.jpg", big, quality=80)
    good = cats / "good_for_truncation.png"
    _save(good, _rgb(5, (200, 200)))
    raw = good.read_bytes()
    (cats / "truncated.png").write_bytes(raw[: len(raw) // 2])
    good.unlink()
    for i in range(5):
        _save(dogs / f"dog{i}.bmp" if i % 2 else dogs / f"dog{i}.jpg", _rgb(10 + i, (50, 80)))
    (dogs / "fake.jpg").write_text("this is not an image")
    (dogs / "notes.txt").write_text("ignored: not an image name")
    (root / ".hidden").mkdir()
    _save(root / ".hidden" / "x.png", _rgb(99))
    return root


def test_folder_loads_good_images_and_counts_skipped(image_tree: Path) -> None:
    train = tld.load_split("folder", "train", path=image_tree)
    test = tld.load_split("folder", "test", path=image_tree)
    assert train.classes == ["cats", "dogs"] == test.classes
    assert len(train) + len(test) == 11  # 6 cats + 5 dogs readable
    assert len(test) >= 2 and set(test.labels.tolist()) == {0, 1}
    for s in (train, test):
        assert s.images.shape[1:] == (tld.WORK_SIZE, tld.WORK_SIZE, 3) and s.images.dtype == np.uint8
        assert s.skipped == 2
        assert sorted(f.split(":")[0] for f in s.skipped_files) == [os.path.join("cats", "truncated.png"),
                                                                     os.path.join("dogs", "fake.jpg")]
    all_labels = np.concatenate([train.labels, test.labels])
    assert np.array_equal(np.bincount(all_labels), [6, 5])
    # Deterministic split, independent of the seed argument.
    again = tld.load_split("folder", "train", path=str(image_tree), seed=5)
    assert np.array_equal(again.images, train.images)


def test_folder_modes_convert(tmp_path: Path) -> None:
    deep = np.tile(np.linspace(0, 4000, 64).astype(np.uint16), (64, 1))
    p = tmp_path / "deep.png"
    Image.fromarray(deep).save(p)
    assert Image.open(p).mode.startswith("I")
    arr = folder.read_image(p, 16)
    assert arr.shape == (16, 16, 3) and arr.max() > 240 and arr.min() < 15  # stretched, not clipped to white
    clear = Image.new("RGBA", (20, 20), (0, 0, 0, 0))
    clear.save(tmp_path / "clear.png")
    assert (folder.read_image(tmp_path / "clear.png", 8) == 255).all()  # transparent -> white
    grey = Image.new("L", (10, 30), 77)
    grey.save(tmp_path / "grey.bmp")
    assert (folder.read_image(tmp_path / "grey.bmp", 8) == 77).all()


def test_folder_train_test_layout(tmp_path: Path) -> None:
    root = tmp_path / "split"
    for split, n in (("train", 3), ("test", 2)):
        for cls in ("a", "b"):
            for i in range(n):
                _save(root / split / cls / f"{i}.png", _rgb(i + len(cls)))
    tr = tld.load_split("folder", "train", path=root)
    te = tld.load_split("folder", "test", path=root)
    assert (len(tr), len(te)) == (6, 4) and tr.classes == te.classes == ["a", "b"]


def test_folder_cache_sees_new_files(image_tree: Path) -> None:
    before = len(tld.load_split("folder", "train", path=image_tree)) + len(
        tld.load_split("folder", "test", path=image_tree))
    for i in range(3):
        _save(image_tree / "dogs" / f"new{i}.png", _rgb(50 + i))
    after = len(tld.load_split("folder", "train", path=image_tree)) + len(
        tld.load_split("folder", "test", path=image_tree))
    assert after == before + 3


def test_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        tld.load_split("folder", "train", path=tmp_path / "missing")
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(DataError, match="not a folder"):
        tld.load_split("folder", "train", path=tmp_path / "file.txt")
    with pytest.raises(DataError, match="No folder given"):
        tld.load_split("folder", "train", path=None)
    empty = tmp_path / "empty"
    (empty / "cats").mkdir(parents=True)
    with pytest.raises(DataError, match="no class sub-folders with images"):
        tld.load_split("folder", "train", path=empty)
    one = tmp_path / "one"
    _save(one / "cats" / "a.png", _rgb(1))
    _save(one / "cats" / "b.png", _rgb(2))
    with pytest.raises(DataError, match="only one class.*cats"):
        tld.load_split("folder", "train", path=one)
    broken = tmp_path / "broken"
    for cls in ("a", "b"):
        (broken / cls).mkdir(parents=True)
        (broken / cls / "x.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="None of the 2 image files"):
        tld.load_split("folder", "train", path=broken)


def test_folder_outside_data_root(tmp_path: Path, image_tree: Path) -> None:
    data_root = tmp_path / "allowed"
    data_root.mkdir()
    with pytest.raises(DataError, match="outside the data folder"):
        tld.load_split("folder", "train", path=image_tree, data_root=data_root)
    link = data_root / "sneaky"
    link.symlink_to(image_tree, target_is_directory=True)
    with pytest.raises(DataError, match="outside the data folder"):
        tld.load_split("folder", "train", path=link, data_root=data_root)
    with pytest.raises(DataError, match="outside the data folder"):
        tld.load_split("folder", "train", path=data_root / ".." / image_tree.name, data_root=data_root)
    inside = data_root / "pets"
    for cls in ("a", "b"):
        for i in range(3):
            _save(inside / cls / f"{i}.png", _rgb(i))
    assert len(tld.load_split("folder", "train", path=inside, data_root=data_root)) > 0


# ---------------------------------------------------------------- torchvision sets offline

@pytest.mark.parametrize("name", ["tv-mnist", "usps", "svhn", "cifar10", "stl10"])
def test_torchvision_set_missing_offline(name: str, tmp_path: Path) -> None:
    with pytest.raises(DataError) as e:
        tld.load_split(name, "train", data_root=tmp_path, allow_download=False)
    msg = str(e.value)
    assert name in msg and str(tmp_path.resolve()) in msg and "allow" in msg.lower()


def test_torchvision_download_unreachable_fails_fast(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_a: object, **_k: object) -> None:
        raise OSError("network is unreachable")

    monkeypatch.setattr(tvsets.socket, "create_connection", refuse)
    with pytest.raises(DataError, match="Downloading 'usps'.*failed.*unreachable"):
        tld.load_split("usps", "train", data_root=tmp_path / "d", allow_download=True)


def test_default_data_root(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TL_DATA", str(tmp_path / "x"))
    assert tld.default_data_root() == tmp_path / "x"
    monkeypatch.delenv("TL_DATA")
    monkeypatch.setenv("TL_HOME", str(tmp_path / "home"))
    assert tld.default_data_root() == tmp_path / "home" / "data"


# ---------------------------------------------------------------- transforms

def test_to_tensor_grey_resize_and_normalise() -> None:
    s = tld.load_split("mnist", "test", max_samples=10)
    t = tld.to_tensor(s, 32, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    assert isinstance(t, torch.Tensor) and t.dtype == torch.float32 and t.shape == (10, 3, 32, 32)
    assert torch.equal(t[:, 0], t[:, 1]) and torch.equal(t[:, 1], t[:, 2])
    assert t.min() >= -1.0 - 1e-6 and t.max() <= 1.0 + 1e-6 and t.max() > 0.9


def test_to_tensor_identity_and_constants() -> None:
    s = tld.load_split("mnist-m", "test", max_samples=5)
    raw = tld.to_tensor(s, 28, scale=1.0)
    assert torch.equal(raw, torch.from_numpy(s.images.astype(np.float32)).permute(0, 3, 1, 2))
    const = ImageSet(images=np.full((3, 64, 64, 3), 255, np.uint8), labels=np.zeros(3, np.int64),
                     classes=["a"], name="c")
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    t = tld.to_tensor(const, 16, mean=mean, std=std)  # downscaling, antialiased
    expect = torch.tensor([(1 - m) / sd for m, sd in zip(mean, std)]).view(1, 3, 1, 1).expand(3, 3, 16, 16)
    assert torch.allclose(t, expect, atol=1e-5)
    up = tld.to_tensor(const, 100, mean=0.0, std=1.0)
    assert up.shape == (3, 3, 100, 100) and torch.allclose(up, torch.ones_like(up))


def test_to_tensor_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    from tl_core.data import transforms

    s = tld.load_split("uci-digits", "test")
    whole = tld.to_tensor(s, 12)
    monkeypatch.setattr(transforms, "CHUNK_BYTES", 1)  # one image per chunk
    assert torch.equal(tld.to_tensor(s, 12), whole)
    empty = s.subset(np.zeros(0, np.int64))
    assert tld.to_tensor(empty, 12).shape == (0, 3, 12, 12)
    with pytest.raises(DataError):
        tld.to_tensor(s, 12, std=(1.0, 0.0, 1.0))


def test_thumbnail() -> None:
    for name in ("mnist", "mnist-m", "uci-digits", "syn-digits"):
        s = tld.load_split(name, "test")
        th = tld.thumbnail(s, 0)
        assert th.shape == (64, 64, 3) and th.dtype == np.uint8
        assert tld.thumbnail(s, 3, size=20).shape == (20, 20, 3)
    s = tld.load_split("mnist", "test")
    th = tld.thumbnail(s, 0, size=28)
    assert np.array_equal(th[..., 0], s.images[0, ..., 0]) and np.array_equal(th[..., 0], th[..., 2])
    with pytest.raises(IndexError):
        tld.thumbnail(s, len(s))
