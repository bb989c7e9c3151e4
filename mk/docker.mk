# Ship: Bento, container image, compose stack, Prometheus/Grafana config checks (docs/ship.md).

# The local Debian base image (scripts/build_base_image.sh) works without Docker Hub;
# `BASE_IMAGE=` (empty) builds on BentoML's default python:3.11-slim instead.
LOCAL_BASE_IMAGE := sentiment-base:bookworm-py3.11
BASE_IMAGE ?= $(LOCAL_BASE_IMAGE)
SERVICE_IMAGE ?= sentiment-api
SENTIMENT_CONTAINER ?= sentiment-api
COMPOSE_FILE ?= docker/docker-compose.yml
COMPOSE_PROJECT ?= sentiment-platform
PROMTOOL ?= promtool
AMTOOL ?= amtool
export BASE_IMAGE

.PHONY: docker-engine base-image build containerize docker-build docker-run docker-teardown \
        compose-up compose-down check-prometheus

docker-engine: ## Start Debian's dockerd in the background unless an engine already answers
	scripts/docker_engine.sh start

base-image: ## Build the local Debian bookworm + python3.11 base image (no Docker Hub needed)
	BASE_IMAGE=$(LOCAL_BASE_IMAGE) PY=$(PY) scripts/build_base_image.sh

build: ensure-model ## bentoml build: the service, its code and configs, pinned packages, the model
	@BENTOML=$(BENTOML) PY=$(PY) scripts/build_bento.sh

# The Bento is rebuilt here (seconds) so that the image's tag is that Bento's version.
containerize: ensure-model $(if $(filter $(LOCAL_BASE_IMAGE),$(BASE_IMAGE)),base-image) ## build, then bentoml containerize into SERVICE_IMAGE:<bento version> and :latest
	@tag=$$(BENTOML=$(BENTOML) PY=$(PY) scripts/build_bento.sh | tail -n 1) && version=$${tag#*:} && \
		BENTOML=$(abspath $(BENTOML)) scripts/containerize.sh "$$tag" "$(SERVICE_IMAGE):$$version" && \
		docker tag "$(SERVICE_IMAGE):$$version" "$(SERVICE_IMAGE):latest" && \
		echo "Tagged $(SERVICE_IMAGE):latest; run it with: make docker-run"

docker-build: containerize ## Same as containerize

docker-run: docker-engine ## Run SERVICE_IMAGE:latest as SENTIMENT_CONTAINER on PORT (default 3000), wait until healthy
	@docker rm -f $(SENTIMENT_CONTAINER) >/dev/null 2>&1 || true
	docker run -d --name $(SENTIMENT_CONTAINER) -p $(PORT):3000 $(SERVICE_IMAGE):latest
	@for i in $$(seq 120); do \
		status=$$(docker inspect -f '{{.State.Health.Status}}' $(SENTIMENT_CONTAINER) 2>/dev/null || echo gone); \
		case "$$status" in healthy) break ;; unhealthy|gone) echo "container $$status:"; docker logs --tail 20 $(SENTIMENT_CONTAINER); exit 1 ;; esac; \
		sleep 2; \
	done; echo "$(SENTIMENT_CONTAINER) is $$status"
	@echo "API:     http://localhost:$(PORT)/predict   UI: http://localhost:$(PORT)/ui/"
	@echo "Metrics: http://localhost:$(PORT)/metrics   Monitoring: http://localhost:$(PORT)/monitoring"

docker-teardown: ## Stop and remove SENTIMENT_CONTAINER and the compose stack (images are kept)
	-docker rm -f $(SENTIMENT_CONTAINER)
	@if [ -n "$$(docker ps -aq --filter label=com.docker.compose.project=$(COMPOSE_PROJECT))" ]; then \
		docker-compose -p $(COMPOSE_PROJECT) -f $(COMPOSE_FILE) down; fi

compose-up: docker-engine ## Start the stack: service :3000, Grafana :3001 (GRAFANA_ADMIN_PASSWORD required); MLflow, Prometheus, Alertmanager internal
	@docker image inspect $(SERVICE_IMAGE):latest >/dev/null 2>&1 || { echo "no $(SERVICE_IMAGE):latest image: run make containerize first"; exit 1; }
	@missing=""; for img in $$(SENTIMENT_IMAGE=$(SERVICE_IMAGE):latest docker-compose -f $(COMPOSE_FILE) config | awk '$$1 == "image:" {print $$2}'); do \
		docker image inspect $$img >/dev/null 2>&1 || docker pull -q $$img >/dev/null 2>&1 || missing="$$missing $$img"; \
	done; if [ -n "$$missing" ]; then \
		echo "cannot pull:$$missing (no registry access here; docs/ship.md says how their configs are tested)"; exit 1; fi
	SENTIMENT_IMAGE=$(SERVICE_IMAGE):latest docker-compose -p $(COMPOSE_PROJECT) -f $(COMPOSE_FILE) up -d
	@echo "API http://localhost:3000  Grafana http://localhost:3001  (MLflow, Prometheus, Alertmanager: internal network only)"

compose-down: ## Stop the stack (volumes kept; add COMPOSE_DOWN_ARGS=-v to drop them)
	docker-compose -p $(COMPOSE_PROJECT) -f $(COMPOSE_FILE) down $(COMPOSE_DOWN_ARGS)

check-prometheus: ## promtool/amtool: check prometheus.yml, alerts.yml, alertmanager.yml; run the alert unit tests
	$(AMTOOL) check-config docker/alertmanager.yml
	$(PROMTOOL) check config docker/prometheus.yml
	$(PROMTOOL) check rules docker/alerts.yml
	$(PROMTOOL) test rules docker/alerts_test.yml
