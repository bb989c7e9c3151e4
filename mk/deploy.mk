# Deployment (deploy/): blue-green deploy of an MLflow alias's image with Docker, rollback,
# status, teardown (docs/validation.md, "Deploying").
#
#   ENV=  staging | production (configs/deployment_config.yaml)
ENV ?= staging

.PHONY: deploy rollback-deploy deploy-status undeploy

deploy: $(STAMP) docker-engine ## Blue-green deploy of ENV's alias (build image, smoke test, switch)
	$(PY) -m deploy --env $(ENV)

rollback-deploy: $(STAMP) docker-engine ## Switch ENV's stable port back to the previous container
	$(PY) -m deploy --env $(ENV) --rollback

deploy-status: $(STAMP) ## Which container serves ENV, and what the other one holds
	$(PY) -m deploy --env $(ENV) --status

undeploy: $(STAMP) ## Remove ENV's router and blue/green containers (images are kept)
	$(PY) -m deploy --env $(ENV) --down
