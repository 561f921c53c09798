"""Every file name of a training run, an evaluation and an export, spelt once (plain Python, no TensorFlow).

    runs/cpu/multihead/                     Workdir
      config.json  label_counts.json  train_summary.json  metrics.csv  metrics.jsonl  tensorboard/
      backup/<phase>/  <phase>.done.weights.h5  best.keras  model.keras  (probe.json: a linear-probe arm)
      eval_test/                            Evaluation: report.json  report.md  predictions.npz  *.png
      eval_validation/                      Evaluation (what calibration.json is fitted on)
      export/                               Export: model.keras  saved_model/  labels.json  model_card.json
                                                    calibration.json
                                                    index/ (embeddings.npy  items.json  thumbs/)

Training, evaluation, export, the demo, the CLI and the experiment runner all take their paths from here, so a
renamed file is renamed everywhere. (It sits below `artnet.training.train` and `artnet.serving.export` rather than in
`artnet.run`, which uses both: a module only imports rooms below it.)
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path


def read_json(path: Path) -> dict:
    """The JSON object in `path`, or {} when there is no such file."""
    return json.loads(path.read_text()) if path.is_file() else {}


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """A folder written by `artnet.evaluation.evaluate.evaluate`."""

    root: Path

    def __post_init__(self):
        object.__setattr__(self, "root", Path(self.root))

    @property
    def report_json(self) -> Path:
        return self.root / "report.json"

    @property
    def report_md(self) -> Path:
        return self.root / "report.md"

    @property
    def predictions(self) -> Path:
        return self.root / "predictions.npz"

    def reliability_png(self, head: str) -> Path:
        return self.root / f"reliability_{head}.png"

    def confusion_png(self, head: str) -> Path:
        return self.root / f"confusion_{head}.png"

    def distance_png(self, head: str) -> Path:
        return self.root / f"distance_{head}.png"

    def exists(self) -> bool:
        return self.predictions.is_file() and self.report_json.is_file()


@dataclasses.dataclass(frozen=True)
class SimilarityFiles:
    """The similar-paintings index beside an exported model."""

    root: Path

    @property
    def embeddings(self) -> Path:
        return self.root / "embeddings.npy"

    @property
    def items(self) -> Path:
        return self.root / "items.json"

    @property
    def thumbs(self) -> Path:
        return self.root / "thumbs"

    @property
    def features(self) -> Path:
        """Local features (SIFT) of every indexed painting, for naming a photographed one."""
        return self.root / "features.npz"

    def thumb(self, index: int) -> Path:
        return self.thumbs / f"{index:06d}.jpg"


@dataclasses.dataclass(frozen=True)
class Export:
    """A folder written by `artnet.serving.export.export`: what the predictor, the demo and TF Serving read."""

    root: Path

    def __post_init__(self):
        object.__setattr__(self, "root", Path(self.root))

    @classmethod
    def of(cls, path: str | Path) -> Export:
        """An export folder, or the folder of a `model.keras` inside one."""
        path = Path(path)
        return cls(path.parent if path.is_file() else path)

    @property
    def model(self) -> Path:
        return self.root / "model.keras"

    @property
    def saved_model(self) -> Path:
        return self.root / "saved_model"

    @property
    def labels(self) -> Path:
        return self.root / "labels.json"

    @property
    def card(self) -> Path:
        return self.root / "model_card.json"

    @property
    def calibration(self) -> Path:
        """Per head, the temperature and conformal set rule fitted on validation (`artnet.evaluation.calibration`)."""
        return self.root / "calibration.json"

    @property
    def index(self) -> SimilarityFiles:
        return SimilarityFiles(self.root / "index")

    def read_card(self) -> dict:
        return read_json(self.card)


@dataclasses.dataclass(frozen=True)
class Workdir:
    """A training run's folder (see the top of this module)."""

    root: Path

    def __post_init__(self):
        object.__setattr__(self, "root", Path(self.root))

    @property
    def config(self) -> Path:
        return self.root / "config.json"

    @property
    def label_counts(self) -> Path:
        """Train-split counts per head and class: majority baselines and the model card read them."""
        return self.root / "label_counts.json"

    @property
    def train_summary(self) -> Path:
        return self.root / "train_summary.json"

    @property
    def metrics_csv(self) -> Path:
        return self.root / "metrics.csv"

    @property
    def metrics_jsonl(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def tensorboard(self) -> Path:
        return self.root / "tensorboard"

    def backup(self, phase: str) -> Path:
        return self.root / "backup" / phase

    def phase_done(self, phase: str) -> Path:
        return self.root / f"{phase}.done.weights.h5"

    @property
    def probe_choices(self) -> Path:
        """A linear-probe arm's chosen L2 strength and class weighting per head, with the validation grid."""
        return self.root / "probe.json"

    @property
    def out_of_fold(self) -> Path:
        """The training painters' answers from fold models that never saw them (`calibration_folds`), which the
        export's calibration is fitted on beside validation (`artnet.training.cross_fit`)."""
        return self.root / "out_of_fold.npz"

    @property
    def best_model(self) -> Path:
        return self.root / "best.keras"

    @property
    def model(self) -> Path:
        return self.root / "model.keras"

    @property
    def test_evaluation(self) -> Evaluation:
        return Evaluation(self.root / "eval_test")

    @property
    def validation_evaluation(self) -> Evaluation:
        """The evaluation on validation whose predictions the export's calibration is fitted on."""
        return Evaluation(self.root / "eval_validation")

    @property
    def export(self) -> Export:
        return Export(self.root / "export")

    def read_label_counts(self) -> dict:
        return read_json(self.label_counts)

    def read_train_summary(self) -> dict:
        return read_json(self.train_summary)

    def finished(self) -> bool:
        """Trained, evaluated on test and exported: what `run_experiment` leaves behind."""
        return self.model.is_file() and self.test_evaluation.exists() and self.export.model.is_file()
