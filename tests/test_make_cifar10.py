"""scripts/make_cifar10_imagefolder.py on a tiny fake torchvision CIFAR-10 root (no network).

The fake root has torchvision's exact file layout and pickle format; torchvision itself reads it
(with its MD5 table pointed at the fake files), and the tree the script writes is read back
through the project's own `data=imagefolder` loader, pixel for pixel.
"""

from __future__ import annotations

import hashlib
import importlib.util
import pickle
import sys

import numpy as np
import pytest
from conftest import REPO

from smoothbench.data import load_data

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
PER_BATCH = 4  # 5 train batches -> 20 train images (2 per class), a test batch of 10


def load_script():
    path = REPO / "scripts" / "make_cifar10_imagefolder.py"
    spec = importlib.util.spec_from_file_location("make_cifar10_imagefolder", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


make = load_script()


def _dump(path, obj) -> str:
    path.write_bytes(pickle.dumps(obj))
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture
def fake_root(tmp_path):
    """A torchvision CIFAR-10 root with random images; returns (root, checksums, arrays)."""
    rng = np.random.default_rng(0)
    batch_dir = tmp_path / "src" / "cifar-10-batches-py"
    batch_dir.mkdir(parents=True)
    train_labels = rng.permutation(np.arange(20) % 10)  # 2 per class, scrambled order
    test_labels = rng.permutation(10)
    sums, arrays = {}, {}
    for split, labels, names in (
        ("train", train_labels, [f"data_batch_{i}" for i in range(1, 6)]),
        ("test", test_labels, ["test_batch"]),
    ):
        rows = rng.integers(0, 256, size=(len(labels), 3072), dtype=np.uint8)
        arrays[split] = (rows.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels)
        size = len(labels) // len(names)
        for k, name in enumerate(names):
            part = slice(k * size, (k + 1) * size)
            sums[name] = _dump(
                batch_dir / name,
                {
                    "batch_label": name,
                    "labels": [int(v) for v in labels[part]],
                    "data": rows[part],
                    "filenames": [f"{name}_{i}.png" for i in range(size)],
                },
            )
    sums["batches.meta"] = _dump(
        batch_dir / "batches.meta",
        {"num_cases_per_batch": PER_BATCH, "label_names": CLASSES, "num_vis": 3072},
    )
    return tmp_path / "src", sums, arrays


def run(monkeypatch, sums, *argv) -> int:
    monkeypatch.setattr(make, "torchvision_checksums", lambda: dict(sums))
    return make.main([str(a) for a in argv])


def test_reader_matches_torchvision(fake_root, monkeypatch):
    from torchvision.datasets import CIFAR10

    root, sums, arrays = fake_root
    monkeypatch.setattr(CIFAR10, "train_list", [[n, sums[n]] for n in make.TRAIN_FILES])
    monkeypatch.setattr(CIFAR10, "test_list", [["test_batch", sums["test_batch"]]])
    monkeypatch.setattr(CIFAR10, "meta", {**CIFAR10.meta, "md5": sums["batches.meta"]})
    batch_dir = root / make.BATCH_DIR
    for split, names, train in (
        ("train", make.TRAIN_FILES, True),
        ("test", make.TEST_FILES, False),
    ):
        tv = CIFAR10(str(root), train=train)
        images, labels = make.read_split(batch_dir, names)
        np.testing.assert_array_equal(images, tv.data)
        np.testing.assert_array_equal(labels, tv.targets)
        np.testing.assert_array_equal(images, arrays[split][0])
    assert make.read_classes(batch_dir) == tv.classes == CLASSES


def test_tree_loads_with_imagefolder_loader(fake_root, tmp_path, monkeypatch, capsys):
    root, sums, arrays = fake_root
    monkeypatch.setenv("SMOOTHBENCH_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "nested" / "cifar10-png"
    assert run(monkeypatch, sums, "--root", root, "--out", out, "--workers", 2) == 0
    assert "wrote 20 train and 10 test images" in capsys.readouterr().out
    assert sorted(p.name for p in (out / "train").iterdir()) == CLASSES
    assert sorted(p.name for p in (out / "train" / "cat").iterdir()) == [
        f"{i:05d}.png" for i in np.flatnonzero(arrays["train"][1] == CLASSES.index("cat"))
    ]
    assert not list(out.parent.glob(".*partial*"))

    data = load_data("imagefolder", root=str(out), normalize=False)
    assert data.num_classes == 10
    for split, x, y in (("train", data.train_x, data.train_y), ("test", data.test_x, data.test_y)):
        images, labels = arrays[split]
        # the loader reads class by class, files sorted by name (= index in the split)
        order = np.lexsort((np.arange(len(labels)), labels))
        np.testing.assert_array_equal(y.numpy(), labels[order])
        np.testing.assert_array_equal(x.permute(0, 2, 3, 1).numpy(), images[order])


def test_bad_checksum_refused_nothing_written(fake_root, tmp_path, monkeypatch, capsys):
    root, sums, _ = fake_root
    out = tmp_path / "out"
    assert run(monkeypatch, {**sums, "data_batch_3": "0" * 32}, "--root", root, "--out", out) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "data_batch_3" in err[0] and "--root" in err[0]
    assert not out.exists()


def test_missing_root_and_existing_out_refused(fake_root, tmp_path, monkeypatch, capsys):
    root, sums, _ = fake_root
    out = tmp_path / "out"
    assert run(monkeypatch, sums, "--root", tmp_path / "nowhere", "--out", out) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is missing" in err[0] and "--download" in err[0]
    assert not out.exists()

    (out / "train").mkdir(parents=True)
    (out / "train" / "keep.txt").write_text("mine")
    assert run(monkeypatch, sums, "--root", root, "--out", out) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--out" in err[0] and "not empty" in err[0]
    assert [p.name for p in out.rglob("*")] == ["train", "keep.txt"]


def test_write_split_rejects_bad_labels(tmp_path):
    images = np.zeros((2, 32, 32, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="labels must lie in 0..9"):
        make.write_split(tmp_path / "train", images, np.array([0, 10]), CLASSES)
