"""Full-scale paths, dry-run here: opt-in with `make test-all` (or `pytest -m slow`)."""

from pathlib import Path

import numpy as np
import pytest

FULL_RECIPE = Path(__file__).resolve().parents[1] / "experiments" / "configs" / "full.py"

pytestmark = pytest.mark.slow


def test_nasnet_large_dry_run_build_step_save_load(tmp_path):
    """The headline backbone as the full recipe builds it (its style layers too): build at 331 px, one training
    step, save, load, same probabilities."""
    from artnet.config import load_config
    from artnet.models.artnet import ArtNet
    from artnet.serving.export import load_model

    full = load_config(f"{FULL_RECIPE}:multihead")
    model = ArtNet("nasnet_large", image_size=331, backbone_weights=None, style_layers=full.style_layers)
    # ~85.0 M with three heads, + the style statistics' normalisation and their share of the heads' weights
    assert 85e6 < model.count_params() < 86e6
    model.compile(optimizer="sgd", loss={h: "sparse_categorical_crossentropy" for h in model.heads})
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (2, 331, 331, 3)).astype(np.float32)
    y = {h: np.zeros(2, np.int64) for h in model.heads}
    history = model.fit(x, y, epochs=1, batch_size=2, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    model.save(tmp_path / "nasnet.keras")
    reloaded = load_model(tmp_path / "nasnet.keras")
    expected, again = model.predict(x, verbose=0), reloaded.predict(x, verbose=0)
    for head in model.heads:
        np.testing.assert_allclose(again[head], expected[head], atol=1e-5)
