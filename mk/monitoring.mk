# Monitoring: drift detection quality, memory flatness, unit tests. See docs/monitoring.md.
.PHONY: drift-benchmark monitor-memory test-monitoring

drift-benchmark: ensure-model ## Drift detector: false alarms and power per test (results/drift_benchmark.json)
	$(PY) -m loadtests.drift_benchmark

monitor-memory: ensure-model ## Serve, send 20,000 predictions, report the worker's RSS before/after
	$(PY) -m loadtests.monitor_memory

test-monitoring: $(STAMP) ## Unit tests of the drift tests, detector, monitor hook and benchmark helpers
	$(PY) -m pytest tests/unit/monitoring tests/unit/loadtests/test_drift_benchmark.py $(PYTEST_ARGS)
