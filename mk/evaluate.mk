# Validation and deployment: evaluate, report, promotion gate, rollback, blue-green deploy
# (docs/validation.md).
#
#   MODEL=     an alias (candidate, production), a version number or a models:/ URI;
#              empty = the training config's alias (candidate)
#   EVAL_DATA= a labelled TSV/CSV (sentence, label); empty = SST-2 validation
#   ENV=       staging | production (configs/deployment_config.yaml)
MODEL ?=
EVAL_DATA ?=
ENV ?= staging
MODEL_ARG = $(if $(MODEL),--model $(MODEL))
DATA_ARG = $(if $(EVAL_DATA),--data $(EVAL_DATA))

.PHONY: evaluate report promote promote-dry-run rollback behaviour-tests deploy rollback-deploy \
        deploy-status undeploy validate-workflows drift-check

evaluate: $(STAMP) ## Metrics of MODEL on EVAL_DATA; writes results/*.csv, logs to the MLflow run
	$(PY) -m training.evaluate $(MODEL_ARG) $(DATA_ARG)

report: $(STAMP) ## HTML report of MODEL beside production under results/ (and a PDF with Chromium)
	$(PY) -m training.report $(MODEL_ARG) $(DATA_ARG)

promote: $(STAMP) ## Gate MODEL (default candidate) into the production alias; tags the decision
	$(PY) -m training.promote $(MODEL_ARG) $(DATA_ARG)

promote-dry-run: $(STAMP) ## Print the promotion decision without changing the registry
	$(PY) -m training.promote --dry-run $(MODEL_ARG) $(DATA_ARG)

rollback: $(STAMP) ## Point the production alias back to the previous production version
	$(PY) -m training.promote rollback

behaviour-tests: $(STAMP) ## Behavioural tests (tests/model) of MODEL (default candidate)
	BEHAVIOUR_MODEL=$(or $(MODEL),candidate) $(PY) -m pytest tests/model -m model $(PYTEST_ARGS)

deploy: $(STAMP) docker-engine ## Blue-green deploy of ENV's alias (build image, smoke test, switch)
	$(PY) -m training.deploy --env $(ENV)

rollback-deploy: $(STAMP) docker-engine ## Switch ENV's stable port back to the previous container
	$(PY) -m training.deploy --env $(ENV) --rollback

deploy-status: $(STAMP) ## Which container serves ENV, and what the other one holds
	$(PY) -m training.deploy --env $(ENV) --status

undeploy: $(STAMP) ## Remove ENV's router and blue/green containers (images are kept)
	$(PY) -m training.deploy --env $(ENV) --down

validate-workflows: $(STAMP) ## Check .github/workflows/*.yml against the GitHub workflow schema
	$(VENV)/bin/check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml

drift-check: $(STAMP) ## Drift of EVAL_DATA against MODEL's (default production) reference; exit 1 on drift
	$(PY) -m training.drift_check --data $(or $(EVAL_DATA),$(error set EVAL_DATA=<labelled TSV/CSV>)) $(MODEL_ARG)
