"""The sample recipe, the README's main job: the cpu recipe's backbone on `wga/sample` plus the WikiArt sample.

    .venv/bin/artnet train --config experiments/configs/sample.py:multihead --workdir runs/sample

Data: the `wga/sample` build and, when it exists, ../shared/wikiart-sample (or $ARTNET_WIKIART_DIR) as an extra
labelled folder, each split by painter; a label one collection lacks (WikiArt has no mythological or
historical paintings) is masked there. Heads only, on the frozen backbone's cached features of each training
image and its mirror image (2 views): the backbone runs once per view, the heads train in seconds per epoch,
with early stopping on validation loss.
"""

from __future__ import annotations

import os
from pathlib import Path

from artnet.config import DataConfig, TrainConfig, parse_arm

from . import cpu

WGA_DATA_DIR = os.environ.get("ARTNET_DATA_DIR", "data/tfds")


def get_config(arg: str | None = None) -> TrainConfig:
    arm, options = parse_arm(arg)
    if options:
        raise ValueError(f"sample recipe: takes no options; got {arg!r}")
    config = cpu.get_config(arm)
    config.description = f"sample recipe, {arm}, wga/sample"
    extra = tuple(folder for folder in (cpu.WIKIART,) if (Path(folder) / "labels.csv").is_file())
    config.data = DataConfig(
        source="wga",
        wga_config="sample",
        data_dir=WGA_DATA_DIR,
        batch_size=64,
        augment=config.data.augment,
        extra_folders=extra,
        feature_views=2,
        framing=config.data.framing,  # the WikiArt images' own framing, for the WGA paintings beside them
    )
    # The main job's 10 minutes: heads trained by epochs on the pooled features (the probe's fit on style
    # statistics takes ~3 minutes more here).
    config.style_layers, config.heads_from = (), "epochs"
    config.epochs = config.head_epochs = 60
    config.early_stopping_patience = 8
    return config
