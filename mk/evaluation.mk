# Validation (evaluation/): evaluate, report, promotion gate, rollback, behaviour tests, the
# offline drift check (docs/validation.md). Deploy targets are in mk/deploy.mk.
#
#   MODEL=     an alias (candidate, production), a version number or a models:/ URI;
#              empty = the training config's alias (candidate)
#   EVAL_DATA= a labelled TSV/CSV (sentence, label); empty = SST-2 validation
MODEL ?=
EVAL_DATA ?=
MODEL_ARG = $(if $(MODEL),--model $(MODEL))
DATA_ARG = $(if $(EVAL_DATA),--data $(EVAL_DATA))

.PHONY: evaluate report promote promote-dry-run rollback behaviour-tests validate-workflows \
        drift-check

evaluate: $(STAMP) ## Metrics of MODEL on EVAL_DATA; writes results/*.csv, logs to the MLflow run
	$(PY) -m evaluation $(MODEL_ARG) $(DATA_ARG)

report: $(STAMP) ## HTML report of MODEL beside production under results/ (and a PDF with Chromium)
	$(PY) -m evaluation.report $(MODEL_ARG) $(DATA_ARG)

promote: $(STAMP) ## Gate MODEL (default candidate) into the production alias; tags the decision
	$(PY) -m evaluation.promote $(MODEL_ARG) $(DATA_ARG)

promote-dry-run: $(STAMP) ## Print the promotion decision without changing the registry
	$(PY) -m evaluation.promote --dry-run $(MODEL_ARG) $(DATA_ARG)

rollback: $(STAMP) ## Point the production alias back to the previous production version
	$(PY) -m evaluation.promote rollback

behaviour-tests: $(STAMP) ## Behavioural tests (tests/model) of MODEL (default candidate)
	BEHAVIOUR_MODEL=$(or $(MODEL),candidate) $(PY) -m pytest tests/model -m model $(PYTEST_ARGS)

validate-workflows: $(STAMP) ## Check .github/workflows/*.yml against the GitHub workflow schema
	$(VENV)/bin/check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml

drift-check: $(STAMP) ## Drift of EVAL_DATA against MODEL's (default production) reference; exit 1 on drift
	$(PY) -m evaluation.drift_check --data $(or $(EVAL_DATA),$(error set EVAL_DATA=<labelled TSV/CSV>)) $(MODEL_ARG)
