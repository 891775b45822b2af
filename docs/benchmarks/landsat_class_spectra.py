"""Mean digital number per band, class and split of a built real-label remote-sensing set.

    python docs/benchmarks/landsat_class_spectra.py runs/bench/data/nc_landsat7

(`make bench-data` builds it.) The README quotes it for the Water class, whose val and test
chips have land-like infrared: a labelling problem, not a model one.
"""

from __future__ import annotations

import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import rasterio


def class_spectra(root: Path) -> tuple[list[str], dict[tuple[str, str], tuple[int, np.ndarray]]]:
    """Band names and (class, split) -> (chips, mean DN per band), from the set's split files."""
    split_of = {}
    for split in ("train", "val", "test"):
        for line in (root / f"{split}.txt").read_text().split():
            split_of[line] = split
    means: dict[tuple[str, str], list[np.ndarray]] = defaultdict(list)
    names: list[str] = []
    for path in sorted(root.glob("*/*.tif")):
        split = split_of.get(path.name)
        if split is None:
            raise SystemExit(f"{path}: in no split file of {root}")
        with rasterio.open(path) as src:
            pixels = src.read().astype(np.float64)
            names = [d or f"band {i + 1}" for i, d in enumerate(src.descriptions)]
        means[(path.parent.name, split)].append(pixels.reshape(len(pixels), -1).mean(axis=1))
    return names, {key: (len(v), np.mean(v, axis=0)) for key, v in sorted(means.items())}


def main() -> None:
    """Print the table (markdown)."""
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/bench/data/nc_landsat7")
    names, rows = class_spectra(root)
    print("| class | split | chips | " + " | ".join(names) + " |")
    print("|---|---|---:|" + "---:|" * len(names))
    for (name, split), (count, mean) in rows.items():
        print(f"| {name} | {split} | {count} | " + " | ".join(f"{v:.0f}" for v in mean) + " |")


if __name__ == "__main__":
    main()
