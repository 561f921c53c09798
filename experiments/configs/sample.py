"""The sample recipe, the README's main job: the cpu recipe's backbone on a WGA build plus the WikiArt sample.

    .venv/bin/artnet train --config experiments/configs/sample.py:multihead --workdir runs/sample
    .venv/bin/artnet train --config experiments/configs/sample.py:multihead,wga=artist --workdir runs/sample

Data: the `wga/sample` build (`wga=sample`, the default: a small stratified sample, what a machine without a
mirror downloads) or `wga/artist` (`wga=artist`: every painting the build found, which `make` uses where a
mirror is at hand: all 444 of ../shared/wga-sample) and, when it exists, ../shared/wikiart-sample (or
$ARTNET_WIKIART_DIR) as an extra labelled folder, each split by painter; a label one collection lacks (WikiArt
has no mythological or historical paintings) is masked there. Heads only, on the frozen backbone's cached
features of each training image, its mirror image and two cut-outs of it as from a phone photo (4 views,
`artnet.data.photo_residue`): the backbone runs once per view, the heads train in seconds per epoch, with early
stopping on validation loss.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from artnet.config import DataConfig, TrainConfig, parse_arm

from . import cpu

WGA_DATA_DIR = os.environ.get("ARTNET_DATA_DIR", "data/tfds")
WGA_CONFIGS = ("sample", "artist")  # the builds it can train on (datasets/wga); `random` splits by image


def get_config(arg: str | None = None) -> TrainConfig:
    arm, options = parse_arm(arg)
    wga = options.pop("wga", "sample")
    if options or wga not in WGA_CONFIGS:
        raise ValueError(f"sample recipe: its one option is wga={'|'.join(WGA_CONFIGS)}; got {arg!r}")
    config = cpu.get_config(arm)
    config.description = f"sample recipe, {arm}, wga/{wga}"
    extra = tuple(folder for folder in (cpu.WIKIART,) if (Path(folder) / "labels.csv").is_file())
    config.data = DataConfig(
        source="wga",
        wga_config=wga,
        data_dir=WGA_DATA_DIR,
        batch_size=64,
        augment=dataclasses.replace(config.data.augment, photo=True),
        extra_folders=extra,
        # Each image, its mirror, and two phone-photo cut-outs of it (`Augment(photo=True)`): a visitor's photo,
        # once the photo step cut the painting out, still carries the gallery's light and the phone's lens.
        feature_views=4,
        framing=config.data.framing,  # the WikiArt images' own framing, for the WGA paintings beside them
    )
    # The main job's 10 minutes: heads trained by epochs on the pooled features (the probe's fit on style
    # statistics takes ~3 minutes more here).
    config.style_layers, config.heads_from = (), "epochs"
    config.epochs = config.head_epochs = 60
    config.early_stopping_patience = 8
    return config
