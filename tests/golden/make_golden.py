"""Regenerate ``basicsr_reference.npz``: BasicSR 1.4.2's own functions on small fixed inputs.

Run once, by hand, outside the test suite (BasicSR is not a dependency of hybridvision, and
none of its code is copied here; its modules are imported from an unpacked source release):

    pip download --no-deps --no-build-isolation --no-binary :all: basicsr==1.4.2 -d /tmp/dl
    mkdir -p /tmp/basicsr_ref && tar xzf /tmp/dl/basicsr-1.4.2.tar.gz -C /tmp/basicsr_ref
    python tests/golden/make_golden.py /tmp/basicsr_ref/basicsr-1.4.2/basicsr

BasicSR's package ``__init__`` imports its whole training stack, so the few modules used here
are loaded by file path under their own names. README.md beside this file says what each array
is and which function produced it.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

import numpy as np
import torch
from skimage import data

OUT = Path(__file__).with_name("basicsr_reference.npz")


def load_basicsr(root: Path) -> dict[str, types.ModuleType]:
    """BasicSR's matlab_functions, psnr_ssim and data_util modules, without its ``__init__``."""

    def package(name: str, path: Path) -> types.ModuleType:
        module = types.ModuleType(name)
        module.__path__ = [str(path)]
        sys.modules[name] = module
        return module

    def load(name: str, path: Path) -> types.ModuleType:
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        return module

    package("basicsr", root)
    utils = package("basicsr.utils", root / "utils")
    package("basicsr.metrics", root / "metrics")
    package("basicsr.data", root / "data")
    load("basicsr.utils.registry", root / "utils" / "registry.py")
    color = load("basicsr.utils.color_util", root / "utils" / "color_util.py")
    utils.bgr2ycbcr = color.bgr2ycbcr  # what metric_util imports from basicsr.utils
    utils.img2tensor = utils.scandir = None  # imported by data_util, unused by duf_downsample
    load("basicsr.data.transforms", root / "data" / "transforms.py")
    return {
        "matlab": load("basicsr.utils.matlab_functions", root / "utils" / "matlab_functions.py"),
        "metric_util": load("basicsr.metrics.metric_util", root / "metrics" / "metric_util.py"),
        "psnr_ssim": load("basicsr.metrics.psnr_ssim", root / "metrics" / "psnr_ssim.py"),
        "data_util": load("basicsr.data.data_util", root / "data" / "data_util.py"),
    }


def main(root: Path) -> None:
    """Compute every reference array and scalar and write them to :data:`OUT`."""
    basicsr = load_basicsr(root)
    imresize = basicsr["matlab"].imresize
    photo = data.astronaut()
    # A 36x48 crop (a multiple of 2, 3 and 4) with the helmet's edges, and a 6x8 crop to enlarge.
    down_in = photo[100:136, 150:198].copy()
    up_in = photo[100:106, 150:158].copy()
    arrays: dict[str, np.ndarray] = {"down_input": down_in, "up_input": up_in}
    for scale in (2, 3, 4):
        # imresize works on any value range; float64 in, float32 out (its internal dtype),
        # not rounded and not clipped.
        arrays[f"bi_x{scale}"] = imresize(down_in.astype(np.float64), 1 / scale).astype(np.float32)
    for scale in (2, 4):
        arrays[f"up_x{scale}"] = imresize(up_in.astype(np.float64), scale).astype(np.float32)
    frames = torch.from_numpy(down_in.astype(np.float64)).permute(2, 0, 1)[None]  # (T, C, H, W)
    bd = basicsr["data_util"].duf_downsample(frames, kernel_size=13, scale=4)
    arrays["bd_x4"] = bd[0].permute(1, 2, 0).numpy().astype(np.float32)

    # PSNR/SSIM: a 37x49 crop; the GT is its top-left 36x48, the "prediction" the same photo
    # moved by one pixel (its bottom-right 36x48). BasicSR reads images with OpenCV (BGR), so
    # its functions get the BGR order of our RGB arrays.
    pair = photo[100:137, 150:199].copy()
    arrays["metric_pair"] = pair
    gt, pred = pair[:-1, :-1], pair[1:, 1:]
    psnr_ssim = basicsr["psnr_ssim"]
    for border in (0, 4):
        for y in (False, True):
            key = f"border{border}_{'y' if y else 'rgb'}"
            args = (pred[..., ::-1].copy(), gt[..., ::-1].copy(), border)
            arrays[f"psnr_{key}"] = np.float64(psnr_ssim.calculate_psnr(*args, test_y_channel=y))
            arrays[f"ssim_{key}"] = np.float64(psnr_ssim.calculate_ssim(*args, test_y_channel=y))
    np.savez_compressed(OUT, **arrays)
    for name, value in arrays.items():
        print(name, value.shape, value.dtype, repr(value) if value.ndim == 0 else "")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
