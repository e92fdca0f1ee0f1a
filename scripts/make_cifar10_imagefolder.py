"""Write CIFAR-10 as an ImageFolder tree of PNG files, the layout `data=imagefolder` reads.

    python scripts/make_cifar10_imagefolder.py --out data/cifar10-png --download
    python scripts/make_cifar10_imagefolder.py --root data/cifar10 --out data/cifar10-png
    export SMOOTHBENCH_CIFAR10_JPEG=$PWD/data/cifar10-png    # what the presets read at scale=cpu

The source is torchvision's CIFAR-10: `<root>/cifar-10-batches-py/` (data_batch_1..5,
test_batch, batches.meta), downloaded by torchvision with `--download` where there is network,
or already on disk. Every file is checked against torchvision's own MD5 sums before anything
is written. The tree is

    <out>/train/<class>/NNNNN.png    50,000 images (NNNNN: the image's index in the split)
    <out>/test/<class>/NNNNN.png     10,000 images

with the classes in torchvision's order (airplane ... truck, which is also alphabetical, so
ImageFolder's sorted folder names give the same label indices). PNG is lossless: the decoded
pixels are exactly torchvision's. The tree is written next to `<out>` and renamed into place
when complete, so an interrupted run leaves no half tree; an existing non-empty `<out>` is
never touched.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import pickle
import shutil
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

BATCH_DIR = "cifar-10-batches-py"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILES = ("test_batch",)
META_FILE = "batches.meta"


class SourceError(ValueError):
    """The torchvision source cannot be used as given (one line, says what to do)."""


def torchvision_checksums() -> dict[str, str]:
    """{file name: MD5} of the CIFAR-10 python batches, as torchvision itself checks them."""
    from torchvision.datasets import CIFAR10

    sums = {name: md5 for name, md5 in CIFAR10.train_list + CIFAR10.test_list}
    sums[CIFAR10.meta["filename"]] = CIFAR10.meta["md5"]
    return sums


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_out(out: Path) -> None:
    """`out` must be new or an empty folder: an existing tree is never overwritten."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise SourceError(f"--out: {out} already exists and is not empty; choose a new folder")


def check_batches(batch_dir: Path, checksums: dict[str, str]) -> None:
    """Every batch file present with its expected MD5, else SourceError naming the first bad one."""
    for name in (*TRAIN_FILES, *TEST_FILES, META_FILE):
        path = batch_dir / name
        if not path.is_file():
            raise SourceError(
                f"--root: {path} is missing; pass the folder that holds {BATCH_DIR}/, "
                "or add --download on a machine with network access"
            )
        if _md5(path) != checksums[name]:
            raise SourceError(
                f"--root: {path} has MD5 {_md5(path)}, expected {checksums[name]} (a corrupt or "
                "different file); delete it and rerun with --download"
            )


def _unpickle(path: Path) -> dict:
    with path.open("rb") as f:
        return pickle.load(f, encoding="latin1")


def read_classes(batch_dir: Path) -> list[str]:
    """The class names of `batches.meta`, in label order."""
    return list(_unpickle(batch_dir / META_FILE)["label_names"])


def read_split(batch_dir: Path, names: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 32, 32, 3) uint8 and labels (N,) int64 of the batches `names`, in file order.

    The same decoding as torchvision.datasets.CIFAR10: each row of `data` is 3072 bytes, the
    red, green and blue 32x32 planes one after the other.
    """
    images, labels = [], []
    for name in names:
        entry = _unpickle(batch_dir / name)
        images.append(np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        labels.extend(entry["labels"])
    return np.concatenate(images).transpose(0, 2, 3, 1), np.asarray(labels, dtype=np.int64)


def write_split(
    split_dir: Path, images: np.ndarray, labels: np.ndarray, classes: list[str], workers: int = 0
) -> None:
    """Write `images[i]` as `split_dir/<classes[labels[i]]>/<i:05d>.png`; every class gets a folder.

    Every class gets its folder even without images, so a label index can never shift silently
    (the ImageFolder loader refuses an empty class by name).
    """
    from PIL import Image

    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    if len(labels) and not 0 <= labels.min() <= labels.max() < len(classes):
        raise ValueError(f"labels must lie in 0..{len(classes) - 1}")
    for name in classes:
        (split_dir / name).mkdir(parents=True, exist_ok=True)

    def save(i: int) -> None:
        path = split_dir / classes[labels[i]] / f"{i:05d}.png"
        Image.fromarray(images[i]).save(path, format="PNG")  # (32, 32, 3) uint8: RGB

    # zlib releases the GIL while compressing, so threads use every core
    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        list(pool.map(save, range(len(images)), chunksize=256))


def download(root: Path) -> None:
    """torchvision's download and extraction of CIFAR-10 into `root` (checks the archive's MD5)."""
    from torchvision.datasets import CIFAR10

    CIFAR10(str(root), train=True, download=True)


def make_image_folder(
    root: Path, out: Path, checksums: dict[str, str] | None = None, workers: int = 0
) -> dict[str, int]:
    """Write the ImageFolder tree of the CIFAR-10 batches under `root` to `out`.

    Returns the image count per split. `out` must not exist or be empty; the tree is built in a
    sibling folder and renamed to `out` once complete.
    """
    batch_dir = root / BATCH_DIR
    check_out(out)
    check_batches(batch_dir, torchvision_checksums() if checksums is None else checksums)
    classes = read_classes(batch_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.parent / f".{out.name}.partial-{os.getpid()}"
    if partial.exists():
        shutil.rmtree(partial)
    counts = {}
    try:
        for split, names in (("train", TRAIN_FILES), ("test", TEST_FILES)):
            images, labels = read_split(batch_dir, names)
            write_split(partial / split, images, labels, classes, workers)
            counts[split] = len(labels)
        if out.exists():
            out.rmdir()  # empty, checked above
        partial.rename(out)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return counts


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, type=Path, help="the ImageFolder tree to create")
    p.add_argument(
        "--root",
        type=Path,
        default=Path("data/cifar10"),
        help=f"torchvision's CIFAR-10 root, holding {BATCH_DIR}/ (default: data/cifar10, "
        "the data=cifar10 default)",
    )
    p.add_argument(
        "--download", action="store_true", help="let torchvision download CIFAR-10 into --root"
    )
    p.add_argument("--workers", type=int, default=0, help="PNG writer threads (0: one per core)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = args.out.expanduser()
    root = args.root.expanduser()
    try:
        if args.download:
            check_out(out)  # before a 170 MB download, not after
            try:
                download(root)
            except Exception as err:  # no network, a proxy, a bad archive: one line
                message = str(err).splitlines()[0] if str(err) else type(err).__name__
                raise SourceError(f"--download into --root {root} failed: {message}") from None
        counts = make_image_folder(root, out, workers=args.workers)
    except SourceError as err:
        print(f"make_cifar10_imagefolder: error: {err}", file=sys.stderr)
        return 2
    print(
        f"make_cifar10_imagefolder: wrote {counts['train']} train and {counts['test']} test "
        f"images to {out}\n"
        f"  use it with: smoothbench-train data=imagefolder data.root={out}\n"
        f"  or, for the presets at scale=cpu: export SMOOTHBENCH_CIFAR10_JPEG={out.resolve()}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
