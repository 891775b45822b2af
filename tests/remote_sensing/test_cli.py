"""hv-rs end to end on EuroSAT-layout folders of 4 and 13 bands, and one-line errors (exit 2)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

from remote_sensing.cli import main
from remote_sensing.data import write_stats
from remote_sensing.model import MultiscaleClassifier
from remote_sensing.plan import REMOTE_SENSING
from shared.engine import CHECKPOINT_KEY, read_checkpoint


def _train(root: Path, runs: Path, name: str, *flags: str) -> Path:
    code = main(["train", "--data.root", str(root), "--data.chip_size", "32", *flags,
                 "--trainer.max_steps", "2", "--trainer.batch_size", "4",
                 "--trainer.limit_val_batches", "1", "--trainer.progress", "false",
                 "--trainer.accelerator", "cpu",
                 "--run.runs_dir", str(runs), "--run.name", name])  # fmt: skip
    assert code == 0
    return runs / name / "checkpoints" / "last.ckpt"


@pytest.mark.parametrize("bands", [4, 13])
def test_train_predict_end_to_end(tmp_path: Path, rasters, bands: int, capsys) -> None:
    root = rasters.make_eurosat(tmp_path / f"eurosat{bands}", bands)
    if bands == 4:  # one chip in another CRS: train must tell the user, naming both
        rasters.write_tif(root / "Forest" / "Forest_9.tif", np.ones((4, 32, 32), np.uint16),
                          crs="EPSG:4326", origin=(10.0, 50.0), res=0.001)  # fmt: skip
    # Not the default head: predict and export must take the architecture from the checkpoint.
    flags = ["--model.multiscale_head", "false"] if bands == 13 else []
    checkpoint = _train(root, tmp_path / "runs", "r", *flags)
    if bands == 4:
        err = capsys.readouterr().err
        assert "warning" in err and "several CRS" in err
        assert "EPSG:32633" in err and "EPSG:4326" in err
    entry = torch.load(checkpoint, weights_only=True)[CHECKPOINT_KEY]
    assert (entry["vertical"], entry["schema"]) == ("remote_sensing", 1)
    meta = entry["plan"]["preprocessing"]
    network = read_checkpoint(checkpoint, REMOTE_SENSING)[1].network
    assert network.arch == "hybrid" and network.multiscale_head == (bands != 13)
    assert meta["bands"] == rasters.eurosat_order[:bands]
    assert meta["class_names"] == ["Forest", "River", "SeaLake"] and meta["chip_size"] == 32
    assert len(meta["mean"]) == bands and meta["source_band_count"] == bands
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--split", "val",
                 "--views", "plain", "rotate"]) == 0  # fmt: skip
    assert (checkpoint.parent.parent / "val_confusion.csv").is_file()
    # The checkpoint alone, away from its run folder and with the dataset gone, must predict
    # and export: it carries the architecture and the preprocessing.
    alone = tmp_path / "elsewhere" / "model.ckpt"
    alone.parent.mkdir()
    shutil.copy(checkpoint, alone)
    shutil.rmtree(root)
    shutil.rmtree(tmp_path / "runs")
    scene = rasters.write_tif(tmp_path / "scene.tif",
                              np.full((bands, 64, 96), 900, np.uint16))  # fmt: skip
    assert main(["predict", str(scene), "-o", str(tmp_path / "map.tif"),
                 "--checkpoint", str(alone)]) == 0  # fmt: skip
    with rasterio.open(tmp_path / "map.tif") as out, rasterio.open(scene) as src:
        assert out.crs == src.crs and out.shape == (2, 3)
    program_file = tmp_path / "model.pt2"
    assert main(["export", "--checkpoint", str(alone), "-o", str(program_file)]) == 0
    extra = {"hybridvision.json": ""}
    program = torch.export.load(program_file, extra_files=extra)
    chips = torch.randn(2, bands, 32, 32)
    assert program.module()(chips).shape == (2, 3)
    assert json.loads(extra["hybridvision.json"])["plan"]["preprocessing"] == meta


def test_cli_errors_are_one_line_exit_2(tmp_path: Path, rasters, capsys) -> None:
    root = rasters.make_eurosat(tmp_path / "eurosat", 4)
    (root / "Empty").mkdir()
    assert main(["train", "--data.root", str(root), "--trainer.progress", "false",
                 "--run.runs_dir", str(tmp_path / "runs")]) == 2  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Empty: empty class folder" in err
    scene = rasters.write_tif(tmp_path / "s.tif", np.ones((4, 64, 64), np.uint16))
    assert main(["tile", str(scene), "-o", str(tmp_path), "--size", "32"]) == 2
    assert "must not be the scene" in capsys.readouterr().err
    assert main(["predict", str(scene), "-o", str(tmp_path / "m.tif"),
                 "--checkpoint", str(tmp_path / "missing.ckpt")]) == 2  # fmt: skip
    assert "checkpoint not found" in capsys.readouterr().err
    assert not (tmp_path / "m.tif").exists()


def test_predict_feeds_the_network_the_checkpoints_normalisation(
    tmp_path: Path, rasters, monkeypatch
) -> None:
    """``hv-rs predict`` gives the network ``(x / scale - mean) / std`` of the bands the model was
    trained on, in its band order, with the statistics stored at training: here a stats.json with
    known values, a non-default scale and a band order that is not the file's, and the dataset
    (and its stats.json) deleted before predicting."""
    root = rasters.make_eurosat(tmp_path / "eurosat4", 4)
    bands, scale = ["B03", "B01", "B04"], 5000.0
    mean, std = [0.31, 0.17, 0.23], [0.05, 0.11, 0.02]
    write_stats(root, bands, scale, mean, std)
    checkpoint = _train(root, tmp_path / "runs", "norm", "--data.bands", "[B03, B01, B04]",
                        "--data.scale", "5000")  # fmt: skip
    shutil.rmtree(root)
    scene = np.random.default_rng(3).integers(0, 3000, (4, 32, 64)).astype(np.uint16)
    scene_path = rasters.write_tif(tmp_path / "scene.tif", scene)
    seen: list[torch.Tensor] = []

    def record(module: torch.nn.Module, inputs: tuple) -> None:
        if isinstance(module, MultiscaleClassifier):
            seen.append(inputs[0].detach().clone())

    handle = torch.nn.modules.module.register_module_forward_pre_hook(record)
    try:
        assert main(["predict", str(scene_path), "-o", str(tmp_path / "map.tif"),
                     "--checkpoint", str(checkpoint)]) == 0  # fmt: skip
    finally:
        handle.remove()
    assert len(seen) == 1 and seen[0].shape == (2, 3, 32, 32)  # two 32x32 windows, 3 bands
    file_order = [int(name[1:]) - 1 for name in bands]  # B03 is the file's third band
    pixels = scene[file_order].astype(np.float64)
    expected = (pixels / scale - np.array(mean)[:, None, None]) / np.array(std)[:, None, None]
    windows = np.stack([expected[:, :, :32], expected[:, :, 32:]])
    np.testing.assert_allclose(seen[0].numpy(), windows, rtol=1e-5, atol=1e-4)
