# The retraining loop end to end (README, "Closing the loop"): deploy/loop_demo.py trains the
# small profile into outputs/loop-demo, then serves it, sends Amazon-review traffic with labels,
# lets Prometheus fire the drift alert through Alertmanager to the retrain listener, shadows the
# candidate and runs the gate. Needs Debian's prometheus and prometheus-alertmanager.
# tests/integration/test_loop.py runs the same steps and asserts each one.
.PHONY: loop-demo

loop-demo: $(STAMP) ## The loop on this machine: drift alert -> retrain -> shadow -> gate, timed (results/loop_timeline.json)
	$(PY) -m deploy.loop_demo
