"""Build the demo dataset `demo/fashion-mnist-demo.npz` from the full Fashion-MNIST file.

Usage:
    python demo/make_demo_data.py [PATH_TO_FASHION_MNIST_NPZ] [--out demo/fashion-mnist-demo.npz]

The source path is the first argument or, when absent, the ``PAL_BENCH_DATA``
environment variable. The source must hold ``images`` uint8 [70000, 28, 28] and
``labels`` uint8 [70000], stored grouped by class (7,000 per class, classes in
order 0..9); the last 1,000 items of each class are the canonical test split.

Selection (deterministic, no randomness in *which* items are taken): for every
class ``c`` with block start ``s = 7000 * c``,
  - train: source indices ``s + 0 ... s + 249``   (first 250 of the training part),
  - test:  source indices ``s + 6000 ... s + 6049`` (first 50 of the test part).
The 3,000 selected items are then shuffled with ``numpy.random.default_rng(0)`` so
classes are interleaved. ``source_index`` keeps each item's index in the source.

Only this script reads the full dataset; the project at run time uses the
shipped demo file.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import numpy.typing as npt

CLASS_NAMES: tuple[str, ...] = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
PER_CLASS = 7000  # items per class in the source file
TEST_PER_CLASS = 1000  # the last 1,000 of each class are the canonical test split
N_TRAIN = 250  # demo items per class from the training part
N_TEST = 50  # demo items per class from the test part
SEED = 0
DEFAULT_OUT = Path(__file__).resolve().parent / "fashion-mnist-demo.npz"


def select_indices(
    n_classes: int = len(CLASS_NAMES), n_train: int = N_TRAIN, n_test: int = N_TEST
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.str_]]:
    """Source indices of the demo items (class-grouped order) and their split names."""
    train_start = 0
    test_start = PER_CLASS - TEST_PER_CLASS
    if n_train > test_start or n_test > TEST_PER_CLASS:
        raise ValueError(f"n_train={n_train} / n_test={n_test} exceed the split sizes")
    idx: list[npt.NDArray[np.int64]] = []
    split: list[npt.NDArray[np.str_]] = []
    for c in range(n_classes):
        s = PER_CLASS * c
        idx.append(np.arange(s + train_start, s + train_start + n_train, dtype=np.int64))
        split.append(np.full(n_train, "train"))
        idx.append(np.arange(s + test_start, s + test_start + n_test, dtype=np.int64))
        split.append(np.full(n_test, "test"))
    return np.concatenate(idx), np.concatenate(split).astype("<U5")


def build(source: Path, out: Path) -> dict[str, npt.NDArray[np.generic]]:
    """Read ``source``, write the demo file to ``out`` and return the arrays written."""
    with np.load(source, allow_pickle=False) as data:
        images = data["images"]
        labels = data["labels"]
    n_classes = len(CLASS_NAMES)
    expected = (n_classes * PER_CLASS, 28, 28)
    if images.shape != expected or images.dtype != np.uint8:
        raise ValueError(f"images: expected uint8 {expected}, got {images.dtype} {images.shape}")
    if labels.shape != (expected[0],):
        raise ValueError(f"labels: expected shape ({expected[0]},), got {labels.shape}")
    blocks = labels.reshape(n_classes, PER_CLASS)
    if not (blocks == np.arange(n_classes, dtype=labels.dtype)[:, None]).all():
        raise ValueError("source is not grouped by class (7,000 per class, classes 0..9 in order)")

    src_idx, split = select_indices(n_classes)
    perm = np.random.default_rng(SEED).permutation(len(src_idx))
    src_idx, split = src_idx[perm], split[perm]

    arrays: dict[str, npt.NDArray[np.generic]] = {
        "images": np.ascontiguousarray(images[src_idx]),  # (N, 28, 28) uint8
        "labels": labels[src_idx].astype(np.uint8),  # (N,)
        "split": split,  # (N,) '<U5': 'train' | 'test'
        "class_names": np.array(CLASS_NAMES, dtype="<U11"),  # (10,)
        "source_index": src_idx.astype(np.int32),  # (N,) index in the source file
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        out,
        images=arrays["images"],
        labels=arrays["labels"],
        split=arrays["split"],
        class_names=arrays["class_names"],
        source_index=arrays["source_index"],
    )
    return arrays


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("source", nargs="?", help="full fashion-mnist.npz (default: $PAL_BENCH_DATA)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output file (default: {DEFAULT_OUT})")
    args = parser.parse_args(argv)
    source = args.source or os.environ.get("PAL_BENCH_DATA")
    if not source:
        parser.error("give the source .npz as an argument or set PAL_BENCH_DATA")
    arrays = build(Path(source), args.out)

    # Read back exactly the way the project does (no pickle) to prove the file is portable.
    with np.load(args.out, allow_pickle=False) as check:
        for key, value in arrays.items():
            if not np.array_equal(check[key], value):
                raise RuntimeError(f"read-back mismatch for {key!r}")
    size = args.out.stat().st_size
    counts = np.bincount(arrays["labels"], minlength=len(CLASS_NAMES)).tolist()
    print(f"wrote {args.out} ({size / 1e6:.2f} MB): {len(arrays['labels'])} images, per class {counts}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
