"""The experiment arms and the comparison runner (tiny backbone, synthetic folder: fast)."""

import csv
import importlib.util
import textwrap
from pathlib import Path

import pytest

from artnet.config import ARMS, load_config
from artnet.data.synthetic import write_synthetic_folder

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "experiments" / "configs"


def _compare_module():
    spec = importlib.util.spec_from_file_location("compare", ROOT / "experiments" / "compare.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    "recipe", ["cpu.py", "cpu.py:{arm},split=image", "full.py", "full.py:{arm},split=random", "sample.py"]
)
def test_arms_differ_only_in_their_heads(recipe):
    path, _, arg = recipe.partition(":")
    configs = {arm: load_config(f"{CONFIGS / path}:{(arg or '{arm}').format(arm=arm)}") for arm in ARMS}
    for arm, config in configs.items():
        assert config.heads == ARMS[arm]
    shared = [{k: v for k, v in c.to_dict().items() if k not in ("heads", "description")} for c in configs.values()]
    assert all(entry == shared[0] for entry in shared)


def test_recipes_say_what_they_are():
    cpu, full = load_config(f"{CONFIGS}/cpu.py:multihead"), load_config(f"{CONFIGS}/full.py:multihead")
    assert (cpu.backbone, cpu.data.source, cpu.data.split_by) == ("efficientnet_lite0", "folder", "author")
    assert load_config(f"{CONFIGS}/cpu.py:multihead,split=image").data.split_by == "file"
    assert (full.backbone, full.image_size, full.optimizer, full.momentum) == ("nasnet_large", 331, "sgd", 0.88)
    assert (full.data.batch_size, full.data.wga_config, full.strategy) == (8, "artist", "auto")
    assert load_config(f"{CONFIGS}/full.py:multihead,split=random").data.wga_config == "random"
    sample = load_config(f"{CONFIGS}/sample.py")  # the arm defaults to multihead
    assert (sample.heads, sample.data.wga_config, sample.backbone) == (ARMS["multihead"], "sample", cpu.backbone)
    # the cpu recipe's heads start as the probe on pooled + style statistics; the main job keeps to its minutes
    assert cpu.heads_from == "probe" and cpu.style_layers[-1] == "block6d_add"
    assert (sample.heads_from, sample.style_layers) == ("epochs", ())
    # WikiArt's images are squashed whole paintings: the WGA paintings beside or against them are framed alike
    assert cpu.data.framing == sample.data.framing == "squash"
    # the full recipe takes over what won, on images: the probe first, then the whole network fine-tunes
    assert (full.heads_from, full.data.feature_views, full.unfreeze) == ("probe", 0, "all") and full.style_layers
    with pytest.raises(ValueError, match="unknown arm 'single_shcool' \\(did you mean 'single_school'\\?\\)"):
        load_config(f"{CONFIGS}/cpu.py:single_shcool")
    with pytest.raises(ValueError, match="options are split=painter\\|image"):
        load_config(f"{CONFIGS}/cpu.py:multihead,split=random")


def test_recipe_files_import_each_other_as_a_package_without_sys_path_edits():
    import sys

    before = list(sys.path)
    config = load_config(f"{CONFIGS}/sample.py:single_type")  # sample.py does `from . import cpu`
    assert config.heads == ("type",) and sys.path == before
    assert sys.modules["experiments.configs.cpu"].__file__ == str(CONFIGS / "cpu.py")


def test_runner_trains_the_arms_and_writes_a_complete_table(tmp_path):
    folder = write_synthetic_folder(tmp_path / "paintings", 200)
    recipe = tmp_path / "tiny_recipe.py"
    recipe.write_text(
        textwrap.dedent(
            f"""
            from artnet.config import ARMS, Augment, DataConfig, TrainConfig, parse_arm
            def get_config(arg=None):
                arm, _ = parse_arm(arg)
                return TrainConfig(backbone="tiny", backbone_weights=None, image_size=32, heads=ARMS[arm],
                    optimizer="adam", learning_rate=0.01, fine_tune_learning_rate=0.01, epochs=1,
                    head_epochs=0, early_stopping_patience=0,
                    data=DataConfig(source="folder", folder={str(folder)!r}, batch_size=32,
                                    augment=Augment(flip=False)))
            """
        )
    )
    compare = _compare_module()
    out = tmp_path / "results"
    argv = ["--name", "tiny", "--train", str(recipe), "--runs", str(tmp_path / "runs"), "--timing"]
    argv += ["--against", "multihead"]
    assert compare.main([*argv, "--out-dir", str(out)]) == 0
    rows = list(csv.DictReader((out / "tiny.csv").open()))
    assert sorted((r["run"], r["head"]) for r in rows) == sorted(
        [("multihead", h) for h in ARMS["multihead"]]
        + [(arm, heads[0]) for arm, heads in ARMS.items() if arm != "multihead"]
    )
    for row in rows:
        assert float(row["top1_low"]) <= float(row["top1"]) <= float(row["top1_high"])
        assert row["parameters"] and row["train_seconds"] and float(row["ms_per_image"]) > 0
    markdown = (out / "tiny.md").read_text()
    assert "three single-head passes" in markdown and "| multihead | school |" in markdown
    # each single-head arm against the multi-head one, on its own head, paired, resampling images and painters
    differences = list(csv.DictReader((out / "tiny_differences.csv").open()))
    assert sorted((r["run"], r["head"], r["metric"]) for r in differences) == sorted(
        (arm, heads[0], metric)
        for arm, heads in ARMS.items()
        if arm != "multihead"
        for metric in ("top1", "balanced_accuracy")
    )
    for row in differences:
        assert row["against"] == "multihead" and int(row["painters"]) > 1
        assert float(row["image_low"]) <= float(row["difference"]) <= float(row["image_high"])
        assert float(row["painter_low"]) <= float(row["difference"]) <= float(row["painter_high"])
    assert "Differences against `multihead`" in markdown and "painters: 95 % CI" in markdown


def test_the_recipe_search_resumes_from_its_committed_table(tmp_path):
    """A fresh checkout has no runs/: the search starts from the table it committed, numbers as numbers, blanks
    as None, so new variants add rows instead of replacing the table."""
    spec = importlib.util.spec_from_file_location("recipe_search", ROOT / "experiments" / "recipe_search.py")
    search = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(search)
    rows = [
        {"variant": "a, b", "head": "school", "n": 1710, "top1": 0.81, "balanced_accuracy": 0.537, "epochs": None},
        {"variant": "c", "head": "year", "n": 531, "top1": 0.6, "balanced_accuracy": None, "epochs": 12},
    ]
    table = tmp_path / "search.csv"
    with table.open("w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=search.COLUMNS, restval="")
        writer.writeheader()
        writer.writerows(rows)
    back = search.committed_rows(table)
    assert [{key: row[key] for key in rows[0]} for row in back] == rows
    assert back[0]["year_mae"] is None and search.to_markdown(back, "cmd") == search.to_markdown(rows, "cmd")


def test_probe_variants_painter_weighting_counts_each_painter_once_and_balances_classes():
    spec = importlib.util.spec_from_file_location("probe_variants", ROOT / "experiments" / "probe_variants.py")
    variants = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(variants)
    import numpy as np

    y = np.array([0, 0, 0, 0, 1, 1])
    painters = np.array(["a", "a", "a", "b", "c", "d"])
    assert np.allclose(variants.sample_weights(y, painters, "image", 1.0), [0.75] * 4 + [1.5] * 2)
    weights = variants.sample_weights(y, painters, "painter", 0.0)
    assert weights[:3].sum() == pytest.approx(weights[3]) and weights.mean() == pytest.approx(1)
    assert weights[:4].sum() == pytest.approx(weights[4:].sum())  # each class the same total


def test_photo_vs_scan_scores_the_linear_probe_beside_the_model():
    """With the probe's answers, the table gains its clean and photo-step balanced accuracy per head."""
    spec = importlib.util.spec_from_file_location("photo_vs_scan", ROOT / "experiments" / "photo_vs_scan.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    from artnet import labels

    schools = labels.VOCABULARIES["school"]
    rows = [{"school": schools[i % 2]} for i in range(8)]

    def answers_of(correct: int) -> list[dict]:  # the first `correct` answers right, the rest the other school
        return [{"school": [(schools[i % 2] if i < correct else schools[1 - i % 2], 0.9)]} for i in range(len(rows))]

    answers = {
        "clean": answers_of(8),
        "photo, whole image": answers_of(0),
        "photo, photo step": answers_of(6),
        "probe, clean": answers_of(4),
        "probe, photo step": answers_of(2),
    }
    table = module.score(rows, answers, ["school"])
    assert table["school"]["clean"] == 1.0 and table["school"]["probe, clean"] == 0.5
    assert table["school"]["probe, photo step"] == 0.25
    text = module.markdown(table, found=0.5)
    assert "linear probe: clean / photo step" in text and "| 50.0 / 25.0 |" in text
    without = module.score(rows, {way: answers[way] for way in module.WAYS}, ["school"])
    assert "linear probe" not in module.markdown(without, found=0.5)
    # The photo cut at its true corners is one more column where it was scored (tables made before it have none).
    assert "true corners" not in text
    cut_true = module.score(rows, {**answers, module.TRUE_CORNERS: answers_of(7)}, ["school"])
    assert cut_true["school"][module.TRUE_CORNERS] == 0.875
    assert module.markdown(cut_true, found=0.5).splitlines()[2].endswith("| 50.0 / 25.0 | 87.5 |")


def test_photo_vs_scan_resamples_whole_painters_for_the_honest_interval():
    """A painter's paintings move together: where the photo step fails all of two painters' paintings and none of
    two others', resampling painters gives a wider interval than resampling paintings, and the table shows it."""
    spec = importlib.util.spec_from_file_location("photo_vs_scan", ROOT / "experiments" / "photo_vs_scan.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    from artnet import labels

    schools = labels.VOCABULARIES["school"]
    rows = [{"school": schools[i % 2], "author": "abcd"[i // 10]} for i in range(40)]
    right = [{"school": [(row["school"], 0.9)]} for row in rows]
    step = [
        {"school": [(row["school"] if row["author"] in "ab" else schools[1 - i % 2], 0.9)]}
        for i, row in enumerate(rows)
    ]
    answers = {"clean": right, "photo, whole image": right, "photo, photo step": step}
    row = module.score(rows, answers, ["school"])["school"]
    low, high = row["step_minus_clean_interval"]
    painter_low, painter_high = row[module.BY_PAINTER]
    assert painter_low <= low and high <= painter_high and painter_high - painter_low > 1.5 * (high - low)
    assert "painters resampled" in module.markdown({"school": row}, found=1.0)
    # One painter only (or none named): no painter column, as in the tables made before it.
    alone = module.score([{**r, "author": "a"} for r in rows], answers, ["school"])["school"]
    assert module.BY_PAINTER not in alone and "painters resampled" not in module.markdown({"school": alone}, 1.0)


def _photo_feature_fixes():
    path = ROOT / "experiments" / "photo_feature_fixes.py"
    spec = importlib.util.spec_from_file_location("photo_feature_fixes", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_photo_feature_fixes_learn_the_photo_s_change_on_training_painters_and_fall_back_where_nothing_was_found():
    """The map undoes a known change of the features (held-out painters' error below leaving them as they are),
    chosen on whole painters; the photo heads read the photo views; where the step found nothing, both fixes
    leave the served answer."""
    import numpy as np

    module = _photo_feature_fixes()
    rng = np.random.default_rng(0)
    n, d = 400, 16
    painters = np.repeat(np.arange(40).astype(str), n // 40)
    hold = module.held_out(painters)
    assert 0 < hold.mean() < 0.5
    assert all(len(set(hold[painters == p])) == 1 for p in np.unique(painters))  # whole painters, in or out
    y = rng.integers(0, 3, n)
    clean = rng.normal(size=(n, d)) + 3 * np.eye(d)[y]
    photo = np.stack([0.5 * clean + 1.0 + 0.05 * rng.normal(size=(n, d)) for _ in range(2)])
    mapper, errors = module.fit_map(clean, photo, hold)
    assert errors[mapper.alpha] < 0.1 * errors["identity"]
    heads, chosen = module.fit_photo_heads(photo, {"school": y}, hold)
    weights, bias = heads["school"]
    assert weights.shape == (d, 6) and (bias[3:] < -1e8).all()  # classes training never saw are never answered
    assert (module.top1(photo[0], heads)["school"] == y).mean() > 0.9
    served = {"school": (weights, np.zeros(6, np.float32))}
    found = np.arange(n) % 2 == 0
    data = {"clean": clean, "step": photo[0], "true": photo[1], "found": found}
    answers = module.ways_of(data, served, mapper, heads)
    for fixed in ("step, mapped", "step, photo heads"):
        assert (answers[fixed]["school"][~found] == answers["step"]["school"][~found]).all()
    table = module.scores({"y_school": y}, answers)
    assert table["step, photo heads"]["school"] > 0.9
