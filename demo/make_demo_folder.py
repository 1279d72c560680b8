"""Write demo images as PNG files into class subfolders, to show an image-folder import.

Usage:
    python demo/make_demo_folder.py OUT_DIR [-n 200] [--split train|test|all] [--npz PATH]

Reads the shipped ``demo/fashion-mnist-demo.npz`` (never the full dataset) and writes
the first ``n`` items (in the file's shuffled, class-interleaved order) as

    OUT_DIR/<class folder>/<source_index>.png

with 28x28 8-bit grayscale PNGs. Class folder names are the class names made
filesystem-safe ("T-shirt/top" -> "T-shirt_top", "Ankle boot" -> "Ankle_boot").
File names are the item's index in the full Fashion-MNIST file, so they are unique
and stable. The function ``write_demo_folder`` is importable for tests.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import numpy as np
from PIL import Image

DEFAULT_NPZ = Path(__file__).resolve().parent / "fashion-mnist-demo.npz"


def folder_name(class_name: str) -> str:
    """A filesystem-safe folder name for a class name (letters, digits, '-', '_' only)."""
    safe = re.sub(r"[^A-Za-z0-9_-]+", "_", class_name).strip("_")
    if not safe:
        raise ValueError(f"class name {class_name!r} has no usable characters")
    return safe


def write_demo_folder(
    out_dir: Path | str, n: int = 200, split: str = "all", npz: Path | str = DEFAULT_NPZ
) -> list[Path]:
    """Write the first ``n`` demo images of ``split`` as PNGs under ``out_dir``/<class>/.

    Returns the written paths in order. ``n`` larger than what is available writes all.
    Existing files with the same names are overwritten.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if split not in ("train", "test", "all"):
        raise ValueError(f"split must be 'train', 'test' or 'all', got {split!r}")
    with np.load(npz, allow_pickle=False) as data:
        images = data["images"]  # (N, 28, 28) uint8
        labels = data["labels"]  # (N,)
        splits = data["split"]  # (N,) 'train' | 'test'
        class_names = [str(c) for c in data["class_names"]]
        source_index = data["source_index"] if "source_index" in data.files else np.arange(len(labels))

    keep = np.arange(len(labels)) if split == "all" else np.flatnonzero(splits == split)
    keep = keep[:n]
    folders = [folder_name(c) for c in class_names]
    if len(set(folders)) != len(folders):
        raise ValueError(f"class names collide as folder names: {folders}")

    out = Path(out_dir)
    written: list[Path] = []
    for i in keep:
        path = out / folders[int(labels[i])] / f"{int(source_index[i]):05d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.ascontiguousarray(images[i])).save(path, format="PNG", optimize=True)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("out_dir", type=Path, help="directory to fill with <class>/<index>.png")
    parser.add_argument("-n", type=int, default=200, help="number of images (default 200)")
    parser.add_argument("--split", choices=("train", "test", "all"), default="all")
    parser.add_argument("--npz", type=Path, default=DEFAULT_NPZ, help=f"demo file (default {DEFAULT_NPZ})")
    args = parser.parse_args(argv)
    written = write_demo_folder(args.out_dir, n=args.n, split=args.split, npz=args.npz)
    n_classes = len({p.parent.name for p in written})
    print(f"wrote {len(written)} PNGs in {n_classes} class folders under {args.out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
