# Performance: the side-by-side benchmark, locust, the GPU check.
USERS ?= 32
SPAWN_RATE ?= 8
DURATION ?= 60s
HOST ?= http://127.0.0.1:$(PORT)
VARIANTS ?= auto= torch=engine=torch onnx=engine=onnx fp32=quantize=false,engine=torch
BATCHES ?= 1 4 16 64

.PHONY: benchmark model-path engine-agreement engine-defaults vs-release load-test gpu-check feedback-overhead shadow-overhead

benchmark: ensure-model ## Platform vs baselines side by side; writes results/benchmark.json
	$(PY) -m loadtests.benchmark

feedback-overhead: ensure-model ## The prediction store's cost: one-client p50 and 32-client texts/s, store off/on alternating; results/feedback_overhead.json
	$(PY) -m loadtests.setting_overhead --env SENTIMENT_FEEDBACK --off false --on true \
		--max-change 0.05 --out results/feedback_overhead.json

shadow-overhead: ensure-model ## A challenger in shadow (the served model as its own challenger, every prediction): the same figures; results/shadow_overhead.json
	$(PY) -m loadtests.setting_overhead --env SENTIMENT_SHADOW_MODEL --off "" --on "$$($(PY) -c 'import bentoml; print(bentoml.models.get("sentiment:latest").tag)')" \
		--extra SENTIMENT_SHADOW_SAMPLE_RATE=1.0 --max-p50-ms 2 --out results/shadow_overhead.json

model-path: ensure-model ## Model-path variants side by side on one thread (VARIANTS, BATCHES); results/model_path.json
	$(PY) -m loadtests.model_path $(foreach v,$(VARIANTS),--variant $(v)) --batch $(BATCHES)

engine-agreement: ensure-model ## Accuracy of torch fp32, torch int8 and ONNX int8 on SST-2 validation, where the int8 engines disagree, and whether answers move with their batch; results/engine_agreement.json
	$(PY) -m loadtests.engine_agreement

engine-defaults: ensure-model ## Old (torch) vs new (auto) engine default: one-client p50, 32-client texts/s and server-worker CPU per request, alternating; results/engine_defaults.json
	$(PY) -m loadtests.setting_overhead --env SENTIMENT_ENGINE --off torch --on auto --rounds 2 \
		--out results/engine_defaults.json

# The last commit before the engine per pass (issue 21's "today"). Both sides get
# SENTIMENT_ENGINE=auto: a tree older than the setting ignores it, a newer one is compared on
# the same engine.
BASE ?= cac6be1
ROUNDS ?= 2
vs-release: ensure-model ## This tree's defaults against the serving code of BASE (git worktree), alternating, ROUNDS rounds: one-client p50, 32-client texts/s and server-worker CPU per request; results/vs_release.json
	@tree=$$(mktemp -d)/base && git worktree add --detach $$tree $(BASE) >/dev/null && \
	$(PY) -m loadtests.setting_overhead --env SENTIMENT_ENGINE --off auto --on auto --rounds $(ROUNDS) \
		--off-tree $$tree --out results/vs_release.json; \
	status=$$?; git worktree remove --force $$tree; exit $$status

load-test: $(STAMP) ## Locust against a running service (USERS, SPAWN_RATE, DURATION, HOST); reports in results/
	mkdir -p results
	$(VENV)/bin/locust -f loadtests/locustfile.py --headless --host $(HOST) \
		--users $(USERS) --spawn-rate $(SPAWN_RATE) --run-time $(DURATION) \
		--csv results/locust --html results/locust.html

gpu-check: $(STAMP) ## On a CUDA machine: full-profile fine-tuning and fp16 inference figures
	$(PY) -m loadtests.gpu_check --data-dir $(SENTIMENT_DATA_DIR) --out results/gpu_check.json

# Soak: SOAK_REQUESTS single-text predictions at SOAK_CLIENTS clients against `bentoml serve`.
SOAK_REQUESTS ?= 20000
SOAK_CLIENTS ?= 16

.PHONY: soak

soak: ensure-model ## Serve, SOAK_REQUESTS predictions at SOAK_CLIENTS: RSS growth per process, non-200s; results/soak.json
	$(PY) -m loadtests.soak --requests $(SOAK_REQUESTS) --clients $(SOAK_CLIENTS)
