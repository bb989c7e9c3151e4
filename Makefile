# Sentiment platform. `make help` lists every target.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON_SYS ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
BENTOML := $(VENV)/bin/bentoml
PORT ?= 3000
export PORT
CONFIG ?= configs/training_config.yaml
QUICK_CONFIG ?= configs/training_quick.yaml
CPU_CONFIG ?= configs/training_cpu.yaml
MLFLOW_TRACKING_URI ?= sqlite:///mlflow.db
export MLFLOW_TRACKING_URI
# These machines cannot reach the Hugging Face Hub: use the shared SST-2 files when present.
SENTIMENT_DATA_DIR ?= $(if $(wildcard ../shared/data/sst2/train.tsv),$(abspath ../shared/data/sst2),)
export SENTIMENT_DATA_DIR
PYTEST_ARGS ?=

STAMP := $(VENV)/.installed

.PHONY: help install train train-quick train-cpu training-levers import-model ensure-model serve run-app mlflow-ui \
        test test-unit lint format clean

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON_SYS) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP) ## Create .venv and install the project with its dev extras

train: $(STAMP) ## Fine-tune with CONFIG (default: full profile), log to MLflow, register, set alias
	$(PY) -m training.train --config $(CONFIG)

train-quick: $(STAMP) ## Fine-tune with the quick profile (under 3 minutes on 2 CPU cores, about 0.85)
	$(PY) -m training.train --config $(QUICK_CONFIG)

train-cpu: $(STAMP) ## Fine-tune with the CPU profile (under 20 minutes on 2 CPU cores, about 0.88)
	$(PY) -m training.train --config $(CPU_CONFIG)

training-levers: $(STAMP) ## Each fine-tuning lever alone: accuracy and time (results/training_levers.json)
	$(PY) -m training.levers

import-model: $(STAMP) ## Import the MLflow alias's version into the BentoML model store
	$(PY) -m training.import_model

ensure-model: $(STAMP) ## Train (quick) and import only when the BentoML store has no sentiment model
	@if $(PY) -c "import sys, bentoml; sys.exit(0 if any(m.tag.name == 'sentiment' for m in bentoml.models.list()) else 1)"; then \
		echo "BentoML store already has a sentiment model"; \
	else \
		echo "No sentiment model in the BentoML store: training the quick profile"; \
		$(PY) -m training.train --config $(QUICK_CONFIG) && $(PY) -m training.import_model; \
	fi

serve: ensure-model ## Serve the API, docs and UI with bentoml on PORT (default 3000)
	@echo "API:     http://localhost:$(PORT)/predict   (docs: http://localhost:$(PORT)/)"
	@echo "UI:      http://localhost:$(PORT)/ui/"
	@echo "Metrics: http://localhost:$(PORT)/metrics   Monitoring: http://localhost:$(PORT)/monitoring"
	$(BENTOML) serve service:SentimentAPI --port $(PORT)

# The original project's UI variables: the service, with its UI at /ui, on that address.
GRADIO_SERVER_NAME ?= 0.0.0.0
GRADIO_SERVER_PORT ?= $(PORT)

run-app: ensure-model ## serve on GRADIO_SERVER_NAME:GRADIO_SERVER_PORT (default 0.0.0.0:PORT); UI at /ui/
	@echo "UI: http://$(GRADIO_SERVER_NAME):$(GRADIO_SERVER_PORT)/ui/   API: /predict on the same port"
	$(BENTOML) serve service:SentimentAPI --host $(GRADIO_SERVER_NAME) --port $(GRADIO_SERVER_PORT)

mlflow-ui: $(STAMP) ## MLflow UI on port 5003 over MLFLOW_TRACKING_URI
	$(VENV)/bin/mlflow ui --backend-store-uri $(MLFLOW_TRACKING_URI) --port 5003

test: $(STAMP) ## Run the whole test suite (unit, integration, browser, container) with coverage
	$(PY) -m pytest --cov --cov-report=term $(PYTEST_ARGS)

test-unit: $(STAMP) ## Run the unit tests only
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

lint: $(STAMP) ## ruff lint + format check, mypy, and the architecture contracts (lint-imports)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy service.py sentiment serving monitoring ui training evaluation deploy loadtests scoring
	$(VENV)/bin/lint-imports --no-cache

format: $(STAMP) ## Format and auto-fix with ruff
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean: ## Remove caches and local outputs (keeps .venv, mlflow.db and the BentoML store)
	rm -rf .pytest_cache .mypy_cache .ruff_cache .import_linter_cache outputs results test-output
	find . -name __pycache__ -not -path './.venv/*' -prune -exec rm -rf {} +

# Each area of the platform keeps its targets in mk/<area>.mk.
-include mk/*.mk
