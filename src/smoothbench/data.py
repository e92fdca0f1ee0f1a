"""Data sets held in memory as tensors, batched (and optionally augmented) on the run's device.

Images are kept as uint8 (N, 3, 32, 32) and converted to normalized float per batch, so a whole
CIFAR-10 fits on a GPU (150 MB) and no DataLoader workers are needed. Which examples form batch
`t` is a pure function of (seed, t): resuming needs no data-loader state, and a probe that asks for
the step's batch gets exactly the training batch.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

DATA_NAMES = ("digits", "cifar10", "cifar100", "imagefolder", "gaussian")
IMAGE_SIZE = 32


class DataError(ValueError):
    """A data set that cannot be loaded as configured (one line, says what to do)."""


def _generator(*keys: int) -> torch.Generator:
    # A private stream per (seed, epoch) or (seed, step): the global RNG is never touched.
    digest = hashlib.sha256(repr(keys).encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & (2**63 - 1))


@dataclass
class InMemoryData:
    """Train and test tensors plus the recipe that turns stored values into model inputs.

    `train_x`/`test_x` are uint8 images (N, 3, 32, 32) or float vectors (N, D); targets are int64
    class labels or float vectors (regression). `mean`/`std` normalize images per channel.
    """

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int | None  # None: regression targets
    mean: torch.Tensor | None = None
    std: torch.Tensor | None = None
    # (key, permutation on the device) of the latest epoch `batch` used
    _order_cache: tuple | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def is_image(self) -> bool:
        return self.train_x.dtype == torch.uint8

    @property
    def num_train(self) -> int:
        return self.train_x.shape[0]

    def to(self, device: torch.device | str) -> InMemoryData:
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        return InMemoryData(
            self.name,
            move(self.train_x),
            move(self.train_y),
            move(self.test_x),
            move(self.test_y),
            self.num_classes,
            move(self.mean),
            move(self.std),
        )

    def inputs(self, stored: torch.Tensor) -> torch.Tensor:
        """Stored values (uint8 images or float vectors) -> float model inputs."""
        if not self.is_image:
            return stored.float()
        x = stored.float().div_(255.0)
        if self.mean is not None:
            x = (x - self.mean.view(1, -1, 1, 1)) / self.std.view(1, -1, 1, 1)
        return x

    def steps_per_epoch(self, batch_size: int) -> int:
        return max(1, self.num_train // batch_size)

    def batch_indices(self, step: int, batch_size: int, seed: int) -> torch.Tensor:
        """Indices of batch `step`: a new permutation per epoch, the last partial batch dropped."""
        if batch_size >= self.num_train:
            return torch.arange(self.num_train)
        per_epoch = self.steps_per_epoch(batch_size)
        epoch, position = divmod(step, per_epoch)
        order = torch.randperm(self.num_train, generator=_generator(seed, epoch))
        return order[position * batch_size : (position + 1) * batch_size]

    def _epoch_order(self, seed: int, epoch: int) -> torch.Tensor:
        """`batch_indices`' permutation of (seed, epoch), drawn once per epoch and kept on the
        data's device: a step then only slices it (no CPU draw or host-to-device copy)."""
        key = (seed, epoch, self.num_train, self.train_x.device)
        if self._order_cache is None or self._order_cache[0] != key:
            order = torch.randperm(self.num_train, generator=_generator(seed, epoch))
            self._order_cache = (key, order.to(self.train_x.device))
        return self._order_cache[1]

    def batch(
        self, step: int, batch_size: int, seed: int, augment: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The training batch of `step` as (float inputs, targets) on the data's device.

        The same examples as `batch_indices(step, batch_size, seed)`, by the cached permutation.
        """
        if batch_size >= self.num_train:
            x, y = self.train_x.clone(), self.train_y.clone()  # the whole set, in order
        else:
            epoch, position = divmod(step, self.steps_per_epoch(batch_size))
            order = self._epoch_order(seed, epoch)
            idx = order[position * batch_size : (position + 1) * batch_size]
            x, y = self.train_x[idx], self.train_y[idx]
        if augment and self.is_image:
            x = random_crop_flip(x, _generator(seed, step, 1))
        return self.inputs(x), y

    def fixed_subset(self, n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """`n` training examples chosen by `seed` alone, never augmented (Hessian, surfaces)."""
        n = min(n, self.num_train)
        idx = torch.randperm(self.num_train, generator=_generator(seed, -1))[:n]
        idx = idx.to(self.train_x.device)
        return self.inputs(self.train_x[idx]), self.train_y[idx]

    def test_batches(self, batch_size: int):
        for start in range(0, self.test_x.shape[0], batch_size):
            stop = start + batch_size
            yield self.inputs(self.test_x[start:stop]), self.test_y[start:stop]


def _to_device(drawn: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A CPU draw on `device`; to a GPU through pinned memory, so the copy does not wait for
    the device to finish its queued work (a pageable copy would, at every step)."""
    if device.type != "cuda":
        return drawn.to(device)
    return drawn.pin_memory().to(device, non_blocking=True)


def random_crop_flip(
    images: torch.Tensor, generator: torch.Generator, pad: int = 4
) -> torch.Tensor:
    """Per-image random crop from a zero-padded copy, and a random horizontal flip."""
    n, _, h, w = images.shape
    offsets = _to_device(torch.randint(0, 2 * pad + 1, (n, 2), generator=generator), images.device)
    flips = _to_device(torch.rand(n, generator=generator), images.device) < 0.5
    padded = torch.nn.functional.pad(images, (pad, pad, pad, pad))
    rows = offsets[:, 0:1] + torch.arange(h, device=images.device)  # (n, h)
    cols = offsets[:, 1:2] + torch.arange(w, device=images.device)  # (n, w)
    cols = torch.where(flips[:, None], cols.flip(1), cols)
    batch_idx = torch.arange(n, device=images.device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[batch_idx, rows[:, :, None], cols[:, None, :]]
    return out.permute(0, 3, 1, 2).contiguous()


def _channel_stats(train_x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = train_x.double().div(255.0)
    return x.mean(dim=(0, 2, 3)).float(), x.std(dim=(0, 2, 3)).float()


def _image_data(name, train_x, train_y, test_x, test_y, num_classes, normalize) -> InMemoryData:
    mean, std = _channel_stats(train_x) if normalize else (None, None)
    return InMemoryData(name, train_x, train_y, test_x, test_y, num_classes, mean, std)


def load_digits_images(
    test_fraction: float, normalize: bool = True, image_size: int = IMAGE_SIZE
) -> InMemoryData:
    """scikit-learn's shipped 8x8 digits (no download), upsampled to 3 x image_size² uint8."""
    from sklearn.datasets import load_digits

    if not 0.0 < test_fraction < 1.0:
        raise DataError(f"data.test_fraction={test_fraction} must lie strictly between 0 and 1")
    digits = load_digits()
    small = torch.from_numpy(digits.images).float().unsqueeze(1) * (255.0 / 16.0)
    big = torch.nn.functional.interpolate(small, size=(image_size, image_size), mode="bilinear")
    images = big.round().clamp(0, 255).to(torch.uint8).expand(-1, 3, -1, -1).contiguous()
    labels = torch.from_numpy(digits.target).long()
    # a split fixed once for everyone, independent of the run's seed
    order = torch.randperm(len(labels), generator=_generator(20180529))
    n_test = int(round(len(labels) * test_fraction))
    test, train = order[:n_test], order[n_test:]
    return _image_data(
        "digits", images[train], labels[train], images[test], labels[test], 10, normalize
    )


# How long torchvision may wait on the network: a machine without one fails fast instead of
# hanging on a dropped connection.
DOWNLOAD_TIMEOUT_S = 30.0


def _ways_out(name: str) -> str:
    """The two ways to get CIFAR without this run's download, for one-line errors."""
    if name == "cifar10":
        return (
            "run once where there is network (data.download=true fetches it), or point "
            "SMOOTHBENCH_CIFAR10_JPEG or data.root at an ImageFolder copy made by "
            "scripts/make_cifar10_imagefolder.py"
        )
    return (
        f"run once where there is network (data.download=true fetches it), or copy torchvision's "
        f"{name} files there, or point data.root at an ImageFolder tree (train/, test/)"
    )


def _is_image_folder(base: Path) -> bool:
    return (base / "train").is_dir() and (base / "test").is_dir()


@contextmanager
def _download_lock(base: Path, download: bool):
    """One downloader per root at a time: the jobs of a parallel sweep start together, and two
    writers of one archive would corrupt it; the next one finds the files and checks them."""
    if not download:
        yield
        return
    try:
        base.mkdir(parents=True, exist_ok=True)
        handle = open(base / ".download.lock", "a")  # held until the files are there
    except OSError:
        yield  # an unwritable root: torchvision's own error says so
        return
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _torchvision_split(cls, root: str, train: bool, download: bool):
    import socket

    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        with _download_lock(Path(root), download):
            return cls(root, train=train, download=download)
    finally:
        socket.setdefaulttimeout(previous)


def load_torchvision_cifar(
    name: str, root: str, download: bool, normalize: bool = True, image_size: int = IMAGE_SIZE
) -> InMemoryData:
    """torchvision's CIFAR-10/100 arrays under `root` (fetched there when `download`), as uint8."""
    from torchvision import datasets

    cls = {"cifar10": datasets.CIFAR10, "cifar100": datasets.CIFAR100}[name]
    base = str(Path(root).expanduser())
    try:
        train = _torchvision_split(cls, base, True, download)
        test = _torchvision_split(cls, base, False, download)
    except (RuntimeError, OSError) as err:
        reason = (str(err).splitlines() or [type(err).__name__])[0]
        what = "downloading it failed" if download else "it is not there"
        raise DataError(
            f"{name} not found under data.root={root!r} and {what} ({reason}); {_ways_out(name)}"
        ) from None

    def to_tensors(ds):
        x = torch.from_numpy(np.asarray(ds.data)).permute(0, 3, 1, 2).contiguous()
        return x, torch.as_tensor(ds.targets, dtype=torch.long)

    (tx, ty), (vx, vy) = to_tensors(train), to_tensors(test)
    tx, vx = resize_images(tx, image_size), resize_images(vx, image_size)
    return _image_data(name, tx, ty, vx, vy, len(train.classes), normalize)


def load_cifar(
    name: str,
    root: str | None,
    download: bool,
    normalize: bool = True,
    skip_bad_files: bool = False,
    image_size: int = IMAGE_SIZE,
) -> InMemoryData:
    """CIFAR-10/100 from `root`: an ImageFolder copy when it holds train/ and test/ class folders
    (as `scripts/make_cifar10_imagefolder.py` writes), else torchvision's files, downloaded there
    when `download` and missing. One config serves both, so the presets need no data switch."""
    if root is None:
        raise DataError(f"data.root is not set; data={name} needs a folder; {_ways_out(name)}")
    base = Path(root).expanduser()
    if _is_image_folder(base):
        data = load_image_folder(root, normalize, skip_bad_files, image_size)
        expected = {"cifar10": 10, "cifar100": 100}[name]
        if data.num_classes != expected:
            raise DataError(
                f"data.root={root!r} is an ImageFolder tree of {data.num_classes} classes, "
                f"but data={name} has {expected}; use data=imagefolder for other data sets"
            )
        data.name = name
        return data
    if not download and not base.exists():
        raise DataError(f"data.root={root!r} does not exist; {_ways_out(name)}")
    return load_torchvision_cifar(name, root, download, normalize, image_size)


def _cache_dir() -> Path:
    base = os.environ.get("SMOOTHBENCH_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "smoothbench"
    )
    return Path(base)


# Cache format version: part of the key, so a change of what the cache holds never reads old files.
CACHE_VERSION = "v2"


def _class_dirs(split_dir: Path) -> list[str]:
    return sorted(p.name for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith("."))


def _list_files(class_dir: Path) -> list[os.DirEntry]:
    """The files of one class folder, by name; hidden files (`.DS_Store`, ...) are not data."""
    with os.scandir(class_dir) as entries:
        files = [e for e in entries if e.is_file() and not e.name.startswith(".")]
    return sorted(files, key=lambda e: e.name)


def _decode(path: str, size: int = IMAGE_SIZE) -> np.ndarray | str:
    """An image file as a uint8 (size, size, 3) array, or the reason it cannot be read."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.load()  # decode now: a truncated or corrupt file fails here, not later
            img = img.convert("RGB")
            if img.size != (size, size):
                img = img.resize((size, size), Image.BILINEAR)
            return np.asarray(img, dtype=np.uint8)
    except Exception as err:  # PIL raises many types for bad files; each is a bad file here
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        return f"{type(err).__name__}: {reason}"


def _decode_split(
    base: Path, split: str, files: dict[str, list[str]], classes: list[str], size: int
) -> tuple[torch.Tensor, torch.Tensor, list[tuple[str, str]]]:
    """Decode one split: (images, labels, [(relative path, reason) of unreadable files])."""
    paths, labels = [], []
    for label, cls in enumerate(classes):
        paths += [f"{split}/{cls}/{name}" for name in files[cls]]
        labels += [label] * len(files[cls])
    # PIL releases the GIL while decoding, so threads use every core
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        decoded = list(pool.map(lambda rel: _decode(str(base / rel), size), paths, chunksize=256))
    bad = [(rel, out) for rel, out in zip(paths, decoded, strict=True) if isinstance(out, str)]
    keep = [i for i, out in enumerate(decoded) if not isinstance(out, str)]
    if keep:
        x = torch.from_numpy(np.stack([decoded[i] for i in keep])).permute(0, 3, 1, 2)
        x = x.contiguous()
    else:
        x = torch.zeros((0, 3, size, size), dtype=torch.uint8)
    return x, torch.tensor([labels[i] for i in keep], dtype=torch.long), bad


def _scan_image_folder(
    root: str, base: Path
) -> tuple[list[str], dict[str, dict[str, list[os.DirEntry]]]]:
    """Classes and file names per split, refusing mismatched class sets and empty classes."""
    classes = {split: _class_dirs(base / split) for split in ("train", "test")}
    for split in ("train", "test"):
        if not classes[split]:
            raise DataError(f"data.root={root!r}: {split}/ has no class subfolders (empty split)")
    if classes["train"] != classes["test"]:
        only_train = sorted(set(classes["train"]) - set(classes["test"]))
        only_test = sorted(set(classes["test"]) - set(classes["train"]))
        parts = [
            f"only in {s}/: {', '.join(c)}"
            for s, c in (("train", only_train), ("test", only_test))
            if c
        ]
        raise DataError(
            f"data.root={root!r}: train/ and test/ have different classes ({'; '.join(parts)}); "
            "every class needs images in both splits"
        )
    files = {}
    for split in ("train", "test"):
        files[split] = {}
        for cls in classes["train"]:
            entries = _list_files(base / split / cls)
            if not entries:
                raise DataError(f"data.root={root!r}: class folder {split}/{cls}/ holds no files")
            files[split][cls] = entries
    return classes["train"], files


def _fingerprint(base: Path, files: dict[str, dict[str, list[os.DirEntry]]]) -> str:
    """Cache key: the tree's path and every file's relative name, size and mtime, so a file
    overwritten in place (same count, even with the folder's mtime restored) is a new key."""
    digest = hashlib.sha256(f"{CACHE_VERSION}\0{base.resolve()}".encode())
    for split, per_class in files.items():
        for cls, entries in per_class.items():
            for entry in entries:
                st = entry.stat()
                digest.update(
                    f"\0{split}/{cls}/{entry.name}:{st.st_size}:{st.st_mtime_ns}".encode()
                )
    return digest.hexdigest()[:24]


def _refuse_or_report_bad(root: str, bad: list[tuple[str, str]], skip_bad_files: bool) -> None:
    if not bad:
        return
    if not skip_bad_files:
        first, reason = bad[0]
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise DataError(
            f"data.root={root!r}: {first} is not a readable image ({reason}){more}; remove it "
            "or pass data.skip_bad_files=true to train without it"
        )
    listed = "; ".join(f"{rel} ({reason})" for rel, reason in bad)
    logging.getLogger(__name__).warning(
        "data.skip_bad_files=true: skipped %d unreadable file(s) under %s: %s",
        len(bad),
        root,
        listed,
    )


def _write_cache(cache: Path, tensors: tuple) -> None:
    """Save the decoded tensors for the next run. The cache only saves time: a full or unwritable
    cache dir is a warning (the run goes on without it) and leaves no temp file behind."""
    tmp = cache.with_suffix(f".tmp{os.getpid()}")
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            torch.save(tensors, f)
        os.replace(tmp, cache)
    # torch.save reports a failed write (ENOSPC) as a RuntimeError from its zip writer
    except (OSError, RuntimeError) as err:
        try:
            tmp.unlink()
        except OSError:
            pass
        reason = getattr(err, "strerror", None) or str(err).splitlines()[0]
        logging.getLogger(__name__).warning(
            "the decoded images could not be cached in %r (%s); going on without the cache "
            "(the next run decodes them again)",
            str(cache.parent),
            reason,
        )


def load_image_folder(
    root: str, normalize: bool = True, skip_bad_files: bool = False, image_size: int = IMAGE_SIZE
) -> InMemoryData:
    """An ImageFolder tree (`train/<class>/*`, `test/<class>/*`) decoded once, then cached.

    Decoding 60k JPEGs takes about a minute on two cores; the uint8 tensors are cached under
    $SMOOTHBENCH_CACHE (default ~/.cache/smoothbench), keyed by the tree's path and every file's
    name, size and modification time, and the image size. Both splits must hold the same
    classes, none empty. A file that is not a readable image (corrupt, truncated, not an image)
    is refused by name, or with
    `skip_bad_files` left out and listed in the log. Hidden files are ignored.
    """
    if root is None:
        raise DataError(
            "data.root is not set; data=imagefolder needs a folder with train/ and test/"
        )
    base = Path(root).expanduser()
    if not base.is_dir():
        raise DataError(
            f"data.root={root!r} does not exist; point it at a folder with train/ and test/"
        )
    missing = [s for s in ("train", "test") if not (base / s).is_dir()]
    if missing:
        raise DataError(
            f"data.root={root!r} has no {' or '.join(missing)}/ subfolder (ImageFolder layout)"
        )
    classes, entries = _scan_image_folder(root, base)
    size_tag = "" if image_size == IMAGE_SIZE else f"-{image_size}px"  # 32 px: the older name
    cache = _cache_dir() / f"imagefolder-{_fingerprint(base, entries)}{size_tag}.pt"
    tensors = None
    if cache.is_file():
        try:
            tensors = torch.load(cache, weights_only=True)
            tx, ty, vx, vy, bad = tensors
            bad = [tuple(b) for b in bad]
        except Exception:  # a torn or foreign cache file: decode again and rewrite it
            tensors = None
    if tensors is None:
        names = {
            s: {c: [e.name for e in es] for c, es in per.items()} for s, per in entries.items()
        }
        tx, ty, bad_train = _decode_split(base, "train", names["train"], classes, image_size)
        vx, vy, bad_test = _decode_split(base, "test", names["test"], classes, image_size)
        bad = bad_train + bad_test
        _write_cache(cache, (tx, ty, vx, vy, [list(b) for b in bad]))
    _refuse_or_report_bad(root, bad, skip_bad_files)
    for split, labels in (("train", ty), ("test", vy)):
        counts = torch.bincount(labels, minlength=len(classes))
        if (counts == 0).any():
            empty = classes[int((counts == 0).nonzero()[0])]
            raise DataError(
                f"data.root={root!r}: class folder {split}/{empty}/ holds no readable image"
            )
    return _image_data("imagefolder", tx, ty, vx, vy, len(classes), normalize)


def make_gaussian_regression(num_samples: int, dim: int, data_seed: int) -> InMemoryData:
    """The DLN's data: x ~ N(0, I_dim), y = A x, A i.i.d. Gaussian, all fixed by `data_seed`."""
    if num_samples < 1 or dim < 1:
        raise DataError(
            f"gaussian data needs num_samples >= 1 and dim >= 1, got {num_samples}, {dim}"
        )
    g = _generator(data_seed)
    a = torch.randn(dim, dim, generator=g)
    train_x = torch.randn(num_samples, dim, generator=g)
    test_x = torch.randn(num_samples, dim, generator=g)
    return InMemoryData("gaussian", train_x, train_x @ a.T, test_x, test_x @ a.T, None)


def resize_images(images: torch.Tensor, size: int, chunk: int = 1024) -> torch.Tensor:
    """uint8 images (N, C, H, W) at size x size (bilinear, antialiased); as they are when they
    already have that size. In chunks, so a whole data set is never held as float at once."""
    if tuple(images.shape[-2:]) == (size, size):
        return images
    parts = [
        torch.nn.functional.interpolate(
            images[i : i + chunk].float(), size=(size, size), mode="bilinear", antialias=True
        )
        .round()
        .clamp(0, 255)
        .to(torch.uint8)
        for i in range(0, images.shape[0], chunk)
    ]
    return torch.cat(parts) if parts else images.new_zeros((0, images.shape[1], size, size))


def load_custom(
    loader: Callable[[], Any], target: str, normalize: bool = True, image_size: int = IMAGE_SIZE
) -> InMemoryData:
    """data=custom: what `loader()` returns, held in memory like every other data set.

    Either (train_x, train_y, test_x, test_y), tensors or arrays: uint8 x are images
    (N, C, H, W), resized to image_size and normalized per channel; float x are model inputs
    used as they are (no resize, no normalization, no augmentation). Or (train, test)
    datasets of (image, label): PIL images (made RGB), or (C, H, W) tensors (uint8, or float
    in [0, 1]), resized to image_size. Labels are integer classes; the class count is the
    dataset's `classes` when it has one, else the largest label + 1.
    """
    out = loader()
    if isinstance(out, tuple | list) and len(out) == 4:
        tx, ty, vx, vy = (_as_tensor(target, t) for t in out)
        classes = None
    elif isinstance(out, tuple | list) and len(out) == 2:
        (tx, ty), (vx, vy) = (_dataset_tensors(target, ds, image_size) for ds in out)
        classes = getattr(out[0], "classes", None)
    else:
        raise DataError(
            f"data._target_={target!r} returned a {type(out).__name__}; it must return "
            "(train_x, train_y, test_x, test_y) tensors or (train_dataset, test_dataset)"
        )
    for split, x, y in (("train", tx, ty), ("test", vx, vy)):
        if x.shape[0] == 0 or x.shape[0] != y.shape[0]:
            raise DataError(
                f"data._target_={target!r}: {split} has {x.shape[0]} inputs and "
                f"{y.shape[0]} labels; it needs as many of each, at least one"
            )
        if y.dtype.is_floating_point or y.dtype == torch.bool or y.dim() != 1:
            raise DataError(
                f"data._target_={target!r}: {split} labels must be a 1-D tensor of integer "
                f"classes, got {y.dtype} of shape {tuple(y.shape)}"
            )
    ty, vy = ty.long(), vy.long()
    num_classes = len(classes) if classes else int(max(ty.max(), vy.max())) + 1
    if tx.dtype != torch.uint8:  # float inputs: used as they are
        return InMemoryData("custom", tx.float(), ty, vx.float(), vy, num_classes)
    if tx.dim() == 3:  # (N, H, W): one channel
        tx, vx = tx.unsqueeze(1), vx.unsqueeze(1)
    tx, vx = resize_images(tx, image_size), resize_images(vx, image_size)
    return _image_data("custom", tx, ty, vx, vy, num_classes, normalize)


def _as_tensor(target: str, value: Any) -> torch.Tensor:
    try:
        return torch.as_tensor(value)
    except Exception as err:
        raise DataError(
            f"data._target_={target!r} returned a {type(value).__name__} where a tensor "
            f"belongs ({type(err).__name__}); return torch tensors or numpy arrays"
        ) from None


def _dataset_tensors(target: str, dataset: Any, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A dataset of (image, label) as (uint8 images (N, C, size, size), labels)."""
    images, labels = [], []
    for i in range(len(dataset)):
        image, label = dataset[i]
        images.append(_image_tensor(target, image, size))
        labels.append(int(label))
    if not images:
        return torch.zeros((0, 3, size, size), dtype=torch.uint8), torch.zeros(0, dtype=torch.long)
    return torch.stack(images), torch.tensor(labels, dtype=torch.long)


def _image_tensor(target: str, image: Any, size: int) -> torch.Tensor:
    """One dataset image as uint8 (C, size, size)."""
    from PIL import Image

    if isinstance(image, Image.Image):
        image = image.convert("RGB")
        if image.size != (size, size):
            image = image.resize((size, size), Image.BILINEAR)
        return torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1)
    if not isinstance(image, torch.Tensor) or image.dim() != 3:
        raise DataError(
            f"data._target_={target!r}: a dataset image is a {type(image).__name__}; it must "
            "be a PIL image or a (C, H, W) tensor"
        )
    if image.dtype != torch.uint8:  # torchvision's ToTensor: float in [0, 1]
        image = (image.float() * 255).round().clamp(0, 255).to(torch.uint8)
    return resize_images(image.unsqueeze(0), size)[0]


def load_data(
    name: str,
    *,
    root: str | None = None,
    download: bool = False,
    normalize: bool = True,
    test_fraction: float = 0.2,
    num_samples: int = 1000,
    dim: int = 10,
    data_seed: int = 1234,
    skip_bad_files: bool = False,
    image_size: int = IMAGE_SIZE,
    loader: Callable[[], Any] | None = None,
    target: str | None = None,
) -> InMemoryData:
    """Load a data set by name into CPU memory (move it with `.to(device)`). Images come at
    image_size x image_size. "custom": what `loader()` returns (`load_custom`; `target` names
    the loader in errors)."""
    if name == "digits":
        return load_digits_images(test_fraction, normalize, image_size)
    if name in ("cifar10", "cifar100"):
        return load_cifar(name, root, download, normalize, skip_bad_files, image_size)
    if name == "imagefolder":
        return load_image_folder(root, normalize, skip_bad_files, image_size)
    if name == "custom" and loader is not None:
        return load_custom(loader, target or "custom", normalize, image_size)
    if name == "gaussian":
        return make_gaussian_regression(num_samples, dim, data_seed)
    raise DataError(f"unknown data {name!r}; choose one of: {', '.join(DATA_NAMES)}")
