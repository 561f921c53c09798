"""Recipes as code, one file each (big_vision style): `cpu.py`, `full.py`, `sample.py`.

An arm is (recipe, heads): `--config experiments/configs/cpu.py:multihead` is the multi-head model of the cpu
recipe, `cpu.py:single_school` its school-only twin, identical in all but heads. Options follow the arm after
commas, e.g. `cpu.py:multihead,split=image` (the leakage protocol). See `artnet.config.ARMS`.
"""
