# Monitoring: drift detection quality, memory flatness, unit tests. See docs/monitoring.md.
.PHONY: drift-benchmark monitor-memory test-monitoring

drift-benchmark: ensure-model ## Drift detector: false alarms and power per test (results/drift_benchmark.json)
	$(PY) -m loadtests.drift_benchmark

monitor-memory: ensure-model ## Serve, send 20,000 predictions, report the worker's RSS before/after
	$(PY) -m loadtests.monitor_memory

test-monitoring: $(STAMP) ## Unit tests of the drift tests, detector, monitor hook and benchmark helpers
	$(PY) -m pytest tests/unit/monitoring tests/unit/loadtests/test_drift_benchmark.py $(PYTEST_ARGS)

# Label-free accuracy estimate vs realized accuracy (issue 16). See monitoring/performance.py.
.PHONY: performance-estimation-benchmark

performance-estimation-benchmark: ensure-model ## Estimated vs realized accuracy per shift, windows of 200/500 (results/performance_estimation.json)
	$(PY) -m loadtests.performance_estimation
