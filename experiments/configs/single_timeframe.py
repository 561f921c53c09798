"""Single-head arm: `timeframe` only. Identical to `multihead.py` in all but heads.

    .venv/bin/artnet train --config experiments/configs/single_timeframe.py:cpu --workdir runs/cpu/single_timeframe

Measured (cpu, WikiArt split by painter): top-1 60.7 % is below the majority baseline (75.9 %); balanced
accuracy 35.4 % vs chance 10 %; within the 95 % interval of the multi-head model's `timeframe` head.
Numbers: experiments/results/wikiart_cpu.md.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import arm  # noqa: E402


def get_config(variant=None):
    return arm(("timeframe",), variant, "single-head: timeframe")
