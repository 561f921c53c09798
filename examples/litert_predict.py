"""What school, timeframe and type is this painting? Offline, with only ai-edge-litert, Pillow and numpy.

    pip install ai-edge-litert pillow numpy
    python litert_predict.py EXPORT/model_int8.tflite photo.jpg

The model file sits in an export folder (`artnet export --litert`): `labels.json` names each output's classes,
and `model_card.json` says how the model frames a painting into its square, as it was trained: "crop" (the
centre square) or "squash" (the whole image, stretched). Any of model.tflite, model_fp16.tflite or
model_int8.tflite works: each takes one uint8 RGB image of the model's size and returns probabilities per head.

Where the export is calibrated (`calibration.json` beside the model), the answer is artnet's: each head's
temperature applied, and its conformal set ("Dutch or Flemish (90 % set)"), the classes that hold the true one
for that share of paintings like the calibration split's. The set rule is written out here (a few lines of numpy)
because this script must run without artnet; it is `artnet.evaluation.conformal`'s, and a test holds them equal.
"""

import argparse
import json
from pathlib import Path

import numpy as np
from ai_edge_litert.interpreter import Interpreter
from PIL import Image, ImageOps


def prepare(path: str, size: int, framing: str) -> np.ndarray:
    """The photo as the model reads it: upright (EXIF), RGB, framed square, `size` pixels, uint8, a batch of 1."""
    image = ImageOps.exif_transpose(Image.open(path)).convert("RGB")
    if framing == "crop":
        side = min(image.size)
        left, top = (image.width - side) // 2, (image.height - side) // 2
        image = image.crop((left, top, left + side, top + side))
    # PIL's bilinear filter widens as it shrinks (antialiased), as TensorFlow's resize in training does.
    image = image.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(image, dtype=np.uint8)[np.newaxis]


def calibrate(probabilities: np.ndarray, record: dict) -> tuple[np.ndarray, list[int]]:
    """One head's calibrated probabilities, softmax(log p / T), and its conformal set (class indices, most
    probable first): a class is in when the mass ranked at or above it, plus RAPS' `lam` per rank beyond `k_reg`,
    is at most `qhat` (null: every class); the top class always is."""
    logits = np.maximum(np.log(np.maximum(probabilities.astype(np.float64), 0)), np.log(np.finfo(np.float32).tiny))
    logits = logits / float(record["temperature"])
    calibrated = np.exp(logits - logits.max())
    calibrated /= calibrated.sum()
    rule = record["conformal"]
    qhat = np.inf if rule["qhat"] is None else float(rule["qhat"])
    order = np.argsort(-calibrated, kind="stable")
    scores = np.cumsum(calibrated[order]) + rule.get("lam", 0.0) * np.maximum(
        np.arange(1, len(order) + 1) - rule.get("k_reg", 0), 0
    )
    scores[0] = 0.0
    return calibrated, [int(c) for c, score in zip(order, scores, strict=True) if score <= qhat]


def in_words(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="model.tflite, model_fp16.tflite or model_int8.tflite of an export folder")
    parser.add_argument("photo")
    parser.add_argument("--top", type=int, default=3, help="classes shown per head")
    parser.add_argument("--json", action="store_true", help="print {head: [[class, probability], ...]} instead")
    args = parser.parse_args()
    folder = Path(args.model).parent
    names = json.loads((folder / "labels.json").read_text())
    card = folder / "model_card.json"
    framing = json.loads(card.read_text()).get("framing", "crop") if card.is_file() else "crop"
    interpreter = Interpreter(model_path=args.model, num_threads=1)
    size = int(interpreter.get_input_details()[0]["shape"][1])
    answers = interpreter.get_signature_runner()(images=prepare(args.photo, size, framing))
    calibration_file = folder / "calibration.json"
    calibration = json.loads(calibration_file.read_text()) if calibration_file.is_file() else {}
    ranked, sets = {}, {}
    for head, classes in names.items():
        probabilities = answers[head][0]
        if head in calibration:
            probabilities, members = calibrate(probabilities, calibration[head])
            coverage = calibration[head]["conformal"]["coverage"]
            sets[head] = {"classes": [classes[index] for index in members], "coverage": coverage}
        best = np.argsort(-probabilities, kind="stable")[: args.top]
        ranked[head] = [[classes[index], round(float(probabilities[index]), 4)] for index in best]
    if args.json:
        print(json.dumps({**ranked, **({"sets": sets} if sets else {})}))
        return
    for head, best in ranked.items():
        ranking = ", ".join(f"{name} {probability:.0%}" for name, probability in best)
        if head in sets:
            answer = f"{in_words(sets[head]['classes'])} ({sets[head]['coverage']:.0%} set)"
            ranking = f"{answer}; ranked {ranking}"
        print(f"{head}: {ranking}")
    if "year" in answers:
        print(f"year: about {answers['year'][0]:.0f}, give or take {answers['year_sigma'][0]:.0f}")


if __name__ == "__main__":
    main()
