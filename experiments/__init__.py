"""Experiments: recipes as code (configs/), the comparison runner (compare.py) and committed results (results/)."""
