"""`artnet evaluate` and `artnet predict` say once, on stderr, when the model is a sample-scale one."""

import json

import numpy as np
from PIL import Image

from artnet.cli import main
from artnet.models.artnet import ArtNet
from artnet.serving.export import export


def test_predict_warns_once_for_a_sample_scale_model_and_not_for_a_large_one(tmp_path, capsys):
    painting = tmp_path / "painting.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(painting)
    small, large = tmp_path / "small", tmp_path / "large"
    model = ArtNet("tiny", image_size=32)
    export(model, small, card={"train_examples": 24})
    export(model, large, card={"train_examples": 20_000})

    assert main(["predict", "--model", str(small), str(painting), str(painting)]) == 0
    captured = capsys.readouterr()
    warnings = [line for line in captured.err.splitlines() if "sample-scale" in line]
    assert len(warnings) == 1 and "24 training images" in warnings[0], captured.err
    assert len([line for line in captured.out.splitlines() if line.strip()]) == 2  # the answers still come
    assert json.loads(captured.out.splitlines()[0])["ok"]

    assert main(["predict", "--model", str(large), str(painting)]) == 0
    assert "sample-scale" not in capsys.readouterr().err


def test_evaluate_warns_once_for_a_sample_scale_model_and_not_for_a_large_one(tmp_path, capsys):
    from artnet.data.synthetic import write_synthetic_folder

    folder = write_synthetic_folder(tmp_path / "paintings", 12, authors=4)
    small, large = tmp_path / "small", tmp_path / "large"
    model = ArtNet("tiny", image_size=32)
    export(model, small, card={"train_examples": 24})
    export(model, large, card={"train_examples": 20_000})
    arguments = ["--folder", str(folder), "--split", "all"]

    assert main(["evaluate", "--model", str(small), *arguments, "--out", str(tmp_path / "eval-small")]) == 0
    captured = capsys.readouterr()
    warnings = [line for line in captured.err.splitlines() if "sample-scale" in line]
    assert len(warnings) == 1 and "24 training images" in warnings[0], captured.err
    assert json.loads((tmp_path / "eval-small" / "report.json").read_text())["examples"] == 12  # it still evaluates

    # The .keras file inside the export folder is the same model: the card beside it still speaks.
    model_file = str(small / "model.keras")
    assert main(["evaluate", "--model", model_file, *arguments, "--out", str(tmp_path / "eval-file")]) == 0
    assert sum("sample-scale" in line for line in capsys.readouterr().err.splitlines()) == 1

    assert main(["evaluate", "--model", str(large), *arguments, "--out", str(tmp_path / "eval-large")]) == 0
    assert "sample-scale" not in capsys.readouterr().err
