"""Single-head arm: `type` only. Identical to `multihead.py` in all but heads.

    .venv/bin/artnet train --config experiments/configs/single_type.py:cpu --workdir runs/cpu/single_type

Measured (cpu, WikiArt split by painter): top-1 78.0 % against a majority baseline of 18.5 %; balanced
accuracy 77.6 %; within the 95 % interval of the multi-head model's `type` head.
Numbers: experiments/results/wikiart_cpu.md.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import arm  # noqa: E402


def get_config(variant=None):
    return arm(("type",), variant, "single-head: type")
