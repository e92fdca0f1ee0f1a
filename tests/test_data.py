"""Data sets: shapes, a pure batch order, augmentation by hand, ImageFolder decoding and caching."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from conftest import SHARED_DATA

from smoothbench.data import (
    DataError,
    load_data,
    make_gaussian_regression,
    random_crop_flip,
)


@pytest.fixture(scope="module")
def digits():
    return load_data("digits")


def test_digits_are_3x32x32_uint8_with_a_fixed_split(digits):
    assert digits.train_x.shape[1:] == (3, 32, 32) and digits.train_x.dtype == torch.uint8
    assert digits.num_train + digits.test_x.shape[0] == 1797
    assert digits.test_x.shape[0] == round(1797 * 0.2)
    assert digits.num_classes == 10 and set(digits.train_y.tolist()) == set(range(10))
    # channels are copies of the grey image, normalized with the training set's statistics
    assert torch.equal(digits.train_x[:, 0], digits.train_x[:, 2])
    x = digits.inputs(digits.train_x).double()
    assert x.mean(dim=(0, 2, 3)).abs().max() < 1e-4
    assert (x.std(dim=(0, 2, 3)) - 1).abs().max() < 1e-3
    again = load_data("digits")
    assert torch.equal(again.test_y, digits.test_y)


def test_batch_order_is_a_pure_function_of_seed_and_step(digits):
    per_epoch = digits.steps_per_epoch(64)
    epoch = torch.cat([digits.batch_indices(s, 64, seed=3) for s in range(per_epoch)])
    assert len(set(epoch.tolist())) == per_epoch * 64  # no example twice within an epoch
    assert torch.equal(digits.batch_indices(5, 64, seed=3), digits.batch_indices(5, 64, seed=3))
    assert not torch.equal(digits.batch_indices(5, 64, seed=3), digits.batch_indices(5, 64, seed=4))
    # the next epoch is a different permutation
    assert not torch.equal(
        digits.batch_indices(0, 64, seed=3), digits.batch_indices(per_epoch, 64, seed=3)
    )
    state = torch.get_rng_state()
    digits.batch(7, 64, seed=3, augment=True)
    assert torch.equal(state, torch.get_rng_state())


def test_random_crop_flip_matches_pad_and_slice():
    images = torch.arange(2 * 3 * 6 * 6, dtype=torch.uint8).reshape(2, 3, 6, 6)
    out = random_crop_flip(images, torch.Generator().manual_seed(0), pad=2)
    g = torch.Generator().manual_seed(0)
    offsets = torch.randint(0, 5, (2, 2), generator=g)
    flips = torch.rand(2, generator=g) < 0.5
    padded = torch.nn.functional.pad(images, (2, 2, 2, 2))
    for i in range(2):
        dy, dx = offsets[i].tolist()
        crop = padded[i, :, dy : dy + 6, dx : dx + 6]
        if flips[i]:
            crop = crop.flip(-1)
        assert torch.equal(out[i], crop)


def test_gaussian_regression_is_y_equals_a_x():
    data = make_gaussian_regression(200, 10, data_seed=1)
    a = torch.linalg.lstsq(data.train_x, data.train_y).solution.T
    assert torch.allclose(data.train_x @ a.T, data.train_y, atol=1e-4)
    assert torch.allclose(data.test_x @ a.T, data.test_y, atol=1e-4)
    assert data.num_classes is None
    x, y = data.batch(0, 200, seed=0)
    assert x.shape == (200, 10) and torch.equal(x, data.train_x)


def _tiny_tree(root, sources):
    for split in ("train", "test"):
        for cls, files in sources.items():
            (root / split / cls).mkdir(parents=True)
            for i, src in enumerate(files):
                shutil.copy(src, root / split / cls / f"{i}.{src.suffix.lstrip('.')}")


def test_image_folder_decodes_labels_and_caches(tmp_path, monkeypatch):
    from PIL import Image

    monkeypatch.setenv("SMOOTHBENCH_CACHE", str(tmp_path / "cache"))
    made = tmp_path / "made"
    made.mkdir()
    sources = {}
    for c, colour in enumerate(((255, 0, 0), (0, 0, 255))):
        path = made / f"{c}.png"
        Image.new("RGB", (32, 32), colour).save(path)
        sources[f"class{c}"] = [path, path]
    _tiny_tree(tmp_path / "tree", sources)
    data = load_data("imagefolder", root=str(tmp_path / "tree"), normalize=False)
    assert data.train_x.shape == (4, 3, 32, 32) and data.train_y.tolist() == [0, 0, 1, 1]
    assert data.train_x[0, 0].float().mean() == 255 and data.train_x[2, 2].float().mean() == 255
    assert len(list((tmp_path / "cache").glob("imagefolder-*.pt"))) == 1
    cached = load_data("imagefolder", root=str(tmp_path / "tree"), normalize=False)
    assert torch.equal(cached.train_x, data.train_x)


@pytest.mark.slow
@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="../shared/data/cifar10-jpeg is absent")
def test_image_folder_reads_real_cifar10_jpegs(tmp_path, monkeypatch):
    monkeypatch.setenv("SMOOTHBENCH_CACHE", str(tmp_path / "cache"))
    classes = sorted(p.name for p in (SHARED_DATA / "train").iterdir())
    assert classes[:2] == ["airplane", "automobile"] and len(classes) == 10
    sources = {c: sorted((SHARED_DATA / "train" / c).iterdir())[:3] for c in classes}
    _tiny_tree(tmp_path / "tree", sources)
    data = load_data("imagefolder", root=str(tmp_path / "tree"))
    assert data.train_x.shape == (30, 3, 32, 32) and data.num_classes == 10
    assert np.bincount(data.train_y.numpy()).tolist() == [3] * 10
    assert 60 < data.train_x.float().mean() < 190  # real photographs, not blank decodes


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"name": "mnist"}, "unknown data 'mnist'; choose one of: digits, cifar10"),
        ({"name": "imagefolder", "root": "/nope"}, "data.root='/nope' does not exist"),
        ({"name": "cifar10", "root": "/nope"}, "data.root='/nope' does not exist"),
        ({"name": "digits", "test_fraction": 1.5}, "data.test_fraction=1.5 must lie"),
    ],
)
def test_bad_data_settings_are_one_line_errors(kwargs, message):
    with pytest.raises(DataError) as err:
        load_data(**kwargs)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_image_folder_without_splits_is_refused(tmp_path):
    (tmp_path / "train").mkdir()
    with pytest.raises(DataError, match="has no test/ subfolder"):
        load_data("imagefolder", root=str(tmp_path))


def _image_tree(root, classes=("cat", "dog"), per_class=2):
    """train/ and test/ with `per_class` 32x32 images per class, each of its own colour."""
    from PIL import Image

    for split in ("train", "test"):
        for c, cls in enumerate(classes):
            (root / split / cls).mkdir(parents=True)
            for i in range(per_class):
                colour = (40 * c + 10 * i, 100, 200 - 40 * c)
                suffix = "png" if i % 2 == 0 else "jpg"
                Image.new("RGB", (32, 32), colour).save(root / split / cls / f"{i}.{suffix}")
    return root


def _one_line_data_error(root, **kwargs) -> str:
    with pytest.raises(DataError) as err:
        load_data("imagefolder", root=str(root), normalize=False, **kwargs)
    assert "\n" not in str(err.value)
    return str(err.value)


def test_an_image_overwritten_in_place_is_decoded_again(tmp_path, monkeypatch):
    import os

    from PIL import Image

    monkeypatch.setenv("SMOOTHBENCH_CACHE", str(tmp_path / "cache"))
    root = _image_tree(tmp_path / "tree")
    first = load_data("imagefolder", root=str(root), normalize=False)
    target = root / "train" / "cat" / "0.png"
    folder = target.parent.stat()
    Image.new("RGB", (32, 32), (7, 7, 7)).save(target)  # same name, count, size class
    os.utime(target.parent, ns=(folder.st_atime_ns, folder.st_mtime_ns))  # folder looks untouched
    second = load_data("imagefolder", root=str(root), normalize=False)
    assert not torch.equal(first.train_x[0], second.train_x[0])
    assert second.train_x[0].unique().tolist() == [7]
    assert torch.equal(first.train_x[1:], second.train_x[1:])


def test_a_class_only_in_one_split_is_refused_by_name(tmp_path, monkeypatch):
    monkeypatch.setenv("SMOOTHBENCH_CACHE", str(tmp_path / "cache"))
    root = _image_tree(tmp_path / "tree")
    shutil.copytree(root / "test" / "dog", root / "test" / "bird")
    message = _one_line_data_error(root)
    assert "train/ and test/ have different classes" in message and "only in test/: bird" in message
    shutil.rmtree(root / "test" / "bird")
    shutil.rmtree(root / "test" / "dog")
    assert "only in train/: dog" in _one_line_data_error(root)


def test_empty_classes_and_splits_are_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("SMOOTHBENCH_CACHE", str(tmp_path / "cache"))
    root = _image_tree(tmp_path / "tree")
    for f in (root / "test" / "dog").iterdir():
        f.unlink()
    assert "class folder test/dog/ holds no files" in _one_line_data_error(root)
    shutil.rmtree(root / "test")
    (root / "test").mkdir()
    assert "test/ has no class subfolders (empty split)" in _one_line_data_error(root)


@pytest.mark.parametrize(
    ("name", "damage", "reason"),
    [
        ("1.jpg", lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]), "truncated"),
        ("0.png", lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00garbage" * 20), "Error"),
        ("notes.txt", lambda p: p.write_text("not an image\n"), "UnidentifiedImageError"),
    ],
    ids=["truncated-jpeg", "corrupt-png", "stray-text-file"],
)
def test_unreadable_files_are_named_or_skipped_and_listed(
    tmp_path, monkeypatch, caplog, name, damage, reason
):
    monkeypatch.setenv("SMOOTHBENCH_CACHE", str(tmp_path / "cache"))
    root = _image_tree(tmp_path / "tree", per_class=3)
    (root / "train" / "dog" / ".DS_Store").write_bytes(b"\x00\x01")  # hidden: never data
    bad = root / "train" / "dog" / name
    damage(bad)
    message = _one_line_data_error(root)
    assert f"train/dog/{name} is not a readable image" in message
    assert reason.lower() in message.lower()
    assert "data.skip_bad_files=true" in message
    for attempt in ("decoded", "cached"):  # the skip list survives the cache
        caplog.clear()
        with caplog.at_level("WARNING", logger="smoothbench.data"):
            data = load_data("imagefolder", root=str(root), normalize=False, skip_bad_files=True)
        n_dog = 3 if name == "notes.txt" else 2
        assert data.train_y.tolist() == [0, 0, 0] + [1] * n_dog, attempt
        assert f"train/dog/{name}" in caplog.text and "skipped 1 unreadable file" in caplog.text
    # the cache never hides a bad file from a run that does not skip
    assert f"train/dog/{name}" in _one_line_data_error(root)


def test_a_class_left_empty_by_skipping_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("SMOOTHBENCH_CACHE", str(tmp_path / "cache"))
    root = _image_tree(tmp_path / "tree", per_class=1)
    (root / "test" / "cat" / "0.png").write_text("no image")
    message = _one_line_data_error(root, skip_bad_files=True)
    assert "class folder test/cat/ holds no readable image" in message


@pytest.mark.slow
def test_skip_bad_files_reaches_the_loader_from_the_config(tmp_path, monkeypatch, smoke):
    from smoothbench.build import build_data_from_config

    monkeypatch.setenv("SMOOTHBENCH_CACHE", str(tmp_path / "cache"))
    root = _image_tree(tmp_path / "tree", per_class=3)
    (root / "train" / "cat" / "0.png").write_text("no image")
    overrides = ("data=imagefolder", f"data.root={root}")
    with pytest.raises(DataError, match="train/cat/0.png"):
        build_data_from_config(smoke(*overrides))
    data = build_data_from_config(smoke(*overrides, "data.skip_bad_files=true"))
    assert data.num_train == 5


CIFAR10_CLASSES = (
    "airplane automobile bird cat deer dog frog horse ship truck".split()  # torchvision's order
)


@pytest.mark.slow
def test_presets_read_the_imagefolder_copy_named_by_the_variable(tmp_path, monkeypatch):
    from conftest import compose_config

    import smoothbench.data as data_module
    from smoothbench.build import build_data_from_config

    monkeypatch.setenv("SMOOTHBENCH_CACHE", str(tmp_path / "cache"))
    tree = _image_tree(tmp_path / "tree", classes=CIFAR10_CLASSES, per_class=1)
    monkeypatch.setenv("SMOOTHBENCH_CIFAR10_JPEG", str(tree))

    def no_torchvision(*args, **kwargs):
        raise AssertionError("an ImageFolder root must not reach torchvision")

    monkeypatch.setattr(data_module, "load_torchvision_cifar", no_torchvision)
    cfg = compose_config("experiment=fig4", "scale=cpu")
    assert (cfg.data.name, cfg.data.root) == ("cifar10", str(tree))
    data = build_data_from_config(cfg)
    assert data.name == "cifar10" and data.num_classes == 10
    assert data.num_train == 10 and data.train_y.tolist() == list(range(10))


@pytest.mark.slow
def test_presets_default_to_torchvision_cifar10_in_the_cache(tmp_path, monkeypatch):
    from conftest import compose_config

    monkeypatch.delenv("SMOOTHBENCH_CIFAR10_JPEG", raising=False)
    monkeypatch.setenv("SMOOTHBENCH_CACHE", str(tmp_path / "cache"))
    for scale in ("cpu", "paper"):
        cfg = compose_config("experiment=fig4", f"scale={scale}")
        assert cfg.data.name == "cifar10" and cfg.data.download is True
        assert cfg.data.root == f"{tmp_path / 'cache'}/cifar10"


@pytest.mark.slow
def test_offline_without_a_copy_is_one_line_naming_both_ways_out(tmp_path, monkeypatch):
    import urllib.error

    import torchvision.datasets.cifar

    def offline(*args, **kwargs):  # what urllib raises where there is no network
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torchvision.datasets.cifar, "download_and_extract_archive", offline)
    with pytest.raises(DataError) as err:
        load_data("cifar10", root=str(tmp_path / "cache" / "cifar10"), download=True)
    message = str(err.value)
    assert "\n" not in message and "downloading it failed" in message
    assert "Temporary failure in name resolution" in message
    assert "where there is network" in message  # way out 1: download once
    assert "SMOOTHBENCH_CIFAR10_JPEG or data.root" in message  # way out 2: a copy
    assert "scripts/make_cifar10_imagefolder.py" in message


def test_a_tree_with_other_classes_is_not_cifar10(tmp_path, monkeypatch):
    monkeypatch.setenv("SMOOTHBENCH_CACHE", str(tmp_path / "cache"))
    root = _image_tree(tmp_path / "tree")
    with pytest.raises(DataError, match="ImageFolder tree of 2 classes, but data=cifar10 has 10"):
        load_data("cifar10", root=str(root))


@pytest.mark.slow
def test_missing_cifar_exits_2_with_one_line_through_the_entry_point(tmp_path):
    from conftest import cli

    result = cli("scale=smoke", "data=cifar10", f"data.root={tmp_path / 'none'}", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "does not exist" in lines[0]
    assert "data.download=true" in lines[0] and "make_cifar10_imagefolder.py" in lines[0]


def test_parallel_jobs_download_one_at_a_time(tmp_path, monkeypatch):
    import threading
    import time
    import urllib.error

    import torchvision.datasets.cifar

    active, most = [0], [0]
    guard = threading.Lock()

    def slow_offline(*args, **kwargs):
        with guard:
            active[0] += 1
            most[0] = max(most[0], active[0])
        time.sleep(0.2)
        with guard:
            active[0] -= 1
        raise urllib.error.URLError("offline")

    monkeypatch.setattr(torchvision.datasets.cifar, "download_and_extract_archive", slow_offline)
    errors = []

    def job():
        try:
            load_data("cifar10", root=str(tmp_path / "cifar10"), download=True)
        except DataError as err:
            errors.append(str(err))

    jobs = [threading.Thread(target=job) for _ in range(3)]
    for j in jobs:
        j.start()
    for j in jobs:
        j.join()
    assert len(errors) == 3 and most[0] == 1  # three downloads tried, never two at once
