# Scaling out (README, "Scaling out"): Kubernetes manifests, bulk scoring on Spark, a shared
# MLflow on PostgreSQL, the measured pod memory.
#
#   INPUT=, OUTPUT=  batch-score's files: .csv/.tsv/.parquet in, a .parquet/.csv folder out
#   MODEL=           alias, version number or models:/ URI (default: the training alias)
#   SPARK_MASTER=    default local[2]; spark://host:7077 or a cluster's master scores there
#   K8S_ENV=         staging | production (deploy/k8s/overlays)
K8S_ENV ?= staging
SPARK_MASTER ?= local[2]
export SPARK_MASTER

.PHONY: batch-score k8s-render k8s-check pod-memory

batch-score: $(STAMP) ## Score INPUT into OUTPUT on Spark (SPARK_MASTER, default local[2]) with MODEL
	$(PY) -m scoring.spark --input $(or $(INPUT),$(error set INPUT=<.csv/.tsv/.parquet>)) \
		--output $(or $(OUTPUT),$(error set OUTPUT=<.parquet/.csv folder>)) $(if $(MODEL),--model $(MODEL))

k8s-render: $(STAMP) ## Print deploy/k8s/overlays/K8S_ENV rendered (what kubectl apply -k applies)
	$(PY) -m deploy.manifests render $(K8S_ENV)

k8s-check: $(STAMP) ## Validate the Kubernetes manifests offline and check the PrometheusRule is current
	$(PY) -m deploy.manifests check-rule
	$(PY) -m pytest tests/unit/deploy/test_k8s.py -q $(PYTEST_ARGS)

pod-memory: ensure-model ## Serve, load with 64-text requests, report the process tree's peak memory
	$(PY) -m loadtests.pod_memory --out results/pod_memory.json

# torchrun: NPROC processes on this machine (gloo on CPU, NCCL with one GPU each); rank 0 logs
# to MLflow and registers. More machines: torchrun --nnodes N --rdzv-endpoint host:port ...
NPROC ?= 2

.PHONY: train-distributed

train-distributed: $(STAMP) ## Fine-tune CONFIG with torchrun on NPROC processes (DDP); rank 0 logs and registers
	$(VENV)/bin/torchrun --standalone --nproc-per-node $(NPROC) -m training.train --config $(CONFIG)
