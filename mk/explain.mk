# Word-level explanations (serving/explain.py): how faithful and how fast they are.
#
#   EXPLAIN_LIMIT=   SST-2 validation sentences of >= 5 words (seeded sample; default 300)
#   EXPLAIN_METHODS= e.g. "ablation shapley=10 integrated_gradients=20" (default: ablation and
#                    integrated_gradients=20); results of other methods already in the file stay
EXPLAIN_LIMIT ?= 300
EXPLAIN_METHODS ?=

.PHONY: explain-benchmark

explain-benchmark: ensure-model ## Faithfulness (top-k vs random word deletion) and latency of explanations; results/explain_benchmark.json
	$(PY) -m evaluation.explain_benchmark --limit $(EXPLAIN_LIMIT) $(foreach m,$(EXPLAIN_METHODS),--method $(m))

.PHONY: explain-load

explain-load: ensure-model ## /explain p50 vs /predict p50 over HTTP, and 32-client /predict texts/s with and without an explanation running; results/explain_load.json
	$(PY) -m loadtests.explain_load
