# Web UI (docs/ui.md): the Gradio app that the API service mounts at /ui.

.PHONY: test-ui

test-ui: $(STAMP) ## UI unit tests and the headless-Chromium browser test (screenshots in test-output/screenshots/)
	$(PY) -m pytest tests/unit/ui \
		tests/integration/test_browser_ui.py $(PYTEST_ARGS)
