# Deployment (deploy/): blue-green deploy of an MLflow alias's image with Docker, rollback,
# status, teardown (docs/validation.md, "Deploying").
#
#   ENV=     staging | production (configs/deployment_config.yaml)
#   CANARY=  a percentage: canary release, that share of new connections to the new colour
#            while deploy/canary.py watches both colours, then 100 % or rollback by itself
ENV ?= staging
CANARY ?=

MONITOR_ROUNDS ?= 6
MONITOR_INTERVAL ?= 10

.PHONY: deploy rollback-deploy deploy-status undeploy deploy-staging test-staging \
        deploy-production monitor-deployment

deploy: $(STAMP) docker-engine ## Blue-green deploy of ENV's alias (build image, smoke test, switch; CANARY=10: canary first)
	$(PY) -m deploy --env $(ENV) $(if $(CANARY),--canary $(CANARY))

rollback-deploy: $(STAMP) docker-engine ## Switch ENV's stable port back to the previous container (or end a canary)
	$(PY) -m deploy --env $(ENV) --rollback

deploy-status: $(STAMP) ## Which container serves ENV, what the other one holds, the canary's state
	$(PY) -m deploy --env $(ENV) --status

undeploy: $(STAMP) ## Remove ENV's router and blue/green containers (images are kept)
	$(PY) -m deploy --env $(ENV) --down

# The original project's names for the same steps.
deploy-staging: ## Same as make deploy ENV=staging
	$(MAKE) deploy ENV=staging

test-staging: $(STAMP) docker-engine ## Smoke-test what staging's stable port serves now
	$(PY) -m deploy --env staging --smoke

deploy-production: ## Same as make deploy ENV=production
	$(MAKE) deploy ENV=production

monitor-deployment: $(STAMP) ## Production's status, then health/predictions/drift every MONITOR_INTERVAL s, MONITOR_ROUNDS times
	$(PY) -m deploy --env production --monitor $(MONITOR_ROUNDS) --interval $(MONITOR_INTERVAL)
