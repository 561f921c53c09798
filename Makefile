# The two commands of the README: `make demo` (set up + main job) and `make test` (set up + tests).
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
DATA_DIR ?= data/tfds
# Offline machines: point at a wga.hu mirror (data_txt.zip + art/). ../shared/wga-sample is used when present.
WGA_MANUAL_DIR ?= $(firstword $(wildcard ../shared/wga-sample))
MANUAL_FLAG := $(if $(WGA_MANUAL_DIR),--manual_dir $(WGA_MANUAL_DIR),)
# With a mirror, the main job trains on every painting it holds (`artist`: all of them, split by painter); without
# one it downloads `sample`, a small stratified sample of wga.hu (all of wga.hu is ~50,000 images).
WGA_CONFIG ?= $(if $(WGA_MANUAL_DIR),artist,sample)

SAMPLE_RUN ?= runs/sample

.PHONY: install demo data stats model test test-all lint clean

install: $(VENV)/.installed

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[cpu,test]"
	touch $@

# Main job: build the `sample` config of the wga dataset (download, or the manual mirror), print its statistics,
# train a quick multi-head model on the offline-pretrained EfficientNet-Lite0, export it with its similar-paintings
# index, and serve the demo on http://127.0.0.1:7860. Reruns reuse the dataset and the model.
demo: data stats model
	$(BIN)/artnet demo --model $(SAMPLE_RUN)/export

model: $(SAMPLE_RUN)/export/model.keras

$(SAMPLE_RUN)/export/model.keras: | install
	$(BIN)/artnet train --config experiments/configs/sample.py:multihead,wga=$(WGA_CONFIG) --workdir $(SAMPLE_RUN)

# The builder refuses a catalogue that datasets/wga/checksums.tsv does not pin (wga.hu updates its export). The
# newcomer's demo takes whichever export wga.hu serves today; its build summary records the sha256 it used.
# Set WGA_CATALOG_SHA256=<sha256> (or leave it empty) to be strict here too.
WGA_CATALOG_SHA256 ?= any

data: install
	ARTNET_WGA_CATALOG_SHA256=$(WGA_CATALOG_SHA256) TF_CPP_MIN_LOG_LEVEL=2 $(BIN)/tfds build datasets/wga --config $(WGA_CONFIG) --data_dir $(DATA_DIR) $(MANUAL_FLAG)

stats: install
	$(BIN)/artnet data-stats --config $(WGA_CONFIG) --data-dir $(DATA_DIR)

test: install
	$(BIN)/python -m pytest

test-all: install
	$(BIN)/python -m pytest -m ""

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
