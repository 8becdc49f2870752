# approvals: every target installs what it needs into .venv on a fresh machine.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

UV_VERSION ?= 0.13.8
PYTHON_VERSION ?= 3.11
UV := $(shell command -v uv 2>/dev/null || echo .tools/bin/uv)
RUN := $(UV) run --frozen --all-extras
DEMO_DIR ?= .demo
export UV_PYTHON := $(PYTHON_VERSION)
export UV_PYTHON_DOWNLOADS := never

.PHONY: help
help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

.tools/bin/uv:
	python3 -m venv .tools
	.tools/bin/pip install --quiet "uv==$(UV_VERSION)"

.venv/.synced: uv.lock pyproject.toml | $(UV)
	$(UV) sync --frozen --all-extras
	@touch $@

.PHONY: install
install: .venv/.synced ## create .venv with every extra and dev tool from uv.lock

.PHONY: redis-bin
redis-bin: ## make sure a redis-server binary exists (Debian package if absent)
	@command -v redis-server >/dev/null || { \
	  echo "redis-server not found: installing Debian's redis-server package"; \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq redis-server; \
	  else sudo apt-get update -qq && sudo apt-get install -y -qq redis-server; fi; }

.PHONY: test
test: install redis-bin ## run the whole test suite (unit and real-server tests)
	$(RUN) pytest

.PHONY: lint
lint: install ## ruff lint + format check, mypy
	$(RUN) ruff check .
	$(RUN) ruff format --check .
	$(RUN) mypy

.PHONY: fmt
fmt: install ## format and autofix
	$(RUN) ruff format .
	$(RUN) ruff check --fix .

.PHONY: demo
demo: install redis-bin ## simulate, train, evaluate, policy-eval, gate; then serve and call it over HTTP and gRPC
	DEMO_DIR=$(DEMO_DIR) $(RUN) python -m dev demo

.PHONY: serve
serve: install redis-bin ## serve in the foreground: HTTP :3000, gRPC :50051 (HTTP_PORT, GRPC_PORT, REDIS_URL, MODEL_DIR)
	DEMO_DIR=$(DEMO_DIR) $(RUN) python -m dev serve

MODEL_DIR ?= $(DEMO_DIR)/model

.PHONY: bento
bento: install ## build the bento (service, model package, serve-only deps) from MODEL_DIR (default: the demo's), with CHALLENGER_DIR as its challenger when set
	@test -f $(MODEL_DIR)/manifest.json || { echo "no model in $(MODEL_DIR): run make demo or set MODEL_DIR"; exit 2; }
	BENTOML_HOME=$${BENTOML_HOME:-$(CURDIR)/bentoml_home} BENTOML_DO_NOT_TRACK=true $(RUN) python bento/bundle.py $(MODEL_DIR) $(if $(CHALLENGER_DIR),--challenger $(CHALLENGER_DIR))

.PHONY: bench
bench: install redis-bin ## serving benchmark: model cost vs raw Booster, CPU/call and p99 vs do-nothing servers, Score at 100/300/600 rps, ScoreBatch
	@test -f $(MODEL_DIR)/manifest.json || { echo "no model in $(MODEL_DIR): run make demo or set MODEL_DIR"; exit 2; }
	$(RUN) python bench/serving.py --model $(MODEL_DIR) --data $(DEMO_DIR)/sim/attempts.parquet --seconds $${BENCH_SECONDS:-10}

.PHONY: bench-ingestion
bench-ingestion: install redis-bin ## ReportOutcomes through the service: outcomes/s vs direct apply and round-trip floor, Score p99 with and without ingestion
	@test -f $(MODEL_DIR)/manifest.json || { echo "no model in $(MODEL_DIR): run make demo or set MODEL_DIR"; exit 2; }
	$(RUN) python bench/ingestion.py --model $(MODEL_DIR) --data $(DEMO_DIR)/sim/attempts.parquet --seconds $${BENCH_SECONDS:-10}

.PHONY: bench-outcomes
bench-outcomes: install redis-bin ## live outcomes: apply_outcomes throughput vs a round-trip floor, bytes per key (throwaway Redis)
	$(RUN) python bench/outcomes.py

.PHONY: bench-adaptation
bench-adaptation: install redis-bin ## outages: routing with live outcomes vs frozen features vs the oracle, through the served model (about 6 min; ADAPTATION_ARGS="--seed 8")
	$(RUN) python bench/adaptation.py $(ADAPTATION_ARGS)

.PHONY: bench-experiments
bench-experiments: install ## experiment report vs the truth: 95% interval coverage, A/A false positives, sample-ratio checks over 50 simulated experiments (about 6 min; EXPERIMENTS_ARGS="--seeds 10")
	$(RUN) python bench/experiments.py $(EXPERIMENTS_ARGS)

.PHONY: bench-monitoring
bench-monitoring: install ## monitor vs planted incidents: detection delay per scenario, false alerts on clean simulated months (about 8 min; MONITORING_ARGS="--seeds 1")
	$(RUN) python bench/monitoring.py $(MONITORING_ARGS)

.PHONY: profile
profile: install redis-bin ## where a serving worker's CPU goes under Score load (py-spy, by stage; PROFILE_PROTOCOL=grpc|http PROFILE_RPS=300)
	@test -f $(MODEL_DIR)/manifest.json || { echo "no model in $(MODEL_DIR): run make demo or set MODEL_DIR"; exit 2; }
	$(RUN) python bench/profile.py --model $(MODEL_DIR) --data $(DEMO_DIR)/sim/attempts.parquet --protocol $${PROFILE_PROTOCOL:-grpc} --rps $${PROFILE_RPS:-300} --out $(DEMO_DIR)/profile

.PHONY: proto
proto: install ## regenerate the gRPC stubs from bento/proto/approval/v1/approval.proto (reproducible)
	$(RUN) python bento/proto/generate.py

.PHONY: infra-test
infra-test: install ## Pulumi programs for every stack under mocks, policy rules, kubernetes-validate, checkov
	$(RUN) pytest tests/infra -q

# Pulumi's uv toolchain needs uv on PATH: the one `make install` fetched when none is installed.
PULUMI := PATH="$(abspath $(dir $(UV))):$$PATH" pulumi
PROJECT ?= platform
AWS_REGION ?= us-east-1

.PHONY: bootstrap
bootstrap: install ## once per AWS account: Pulumi state bucket + secrets KMS key (AWS_REGION=us-east-1)
	$(RUN) python -m infra.bootstrap --region $(AWS_REGION)

.PHONY: infra-preview
infra-preview: install ## preview a stack with the policy pack (Pulumi CLI + AWS): make infra-preview PROJECT=platform|application STACK=dev
	@test -n "$(STACK)" || { echo "set STACK=dev|staging|prod"; exit 2; }
	$(PULUMI) preview --stack $(STACK) --cwd infra/$(PROJECT) --policy-pack ../policy

.PHONY: infra-up
infra-up: install ## pulumi up a stack with the policy pack: make infra-up PROJECT=platform|application STACK=dev
	@test -n "$(STACK)" || { echo "set STACK=dev|staging|prod"; exit 2; }
	$(PULUMI) up --stack $(STACK) --cwd infra/$(PROJECT) --policy-pack ../policy

.PHONY: quality
quality: install ## the README's model-quality figures: 1M simulated payments, train, evaluate vs the oracle
	DEMO_DIR=.quality DEMO_PAYMENTS=1000000 DEMO_SEED=7 DEMO_SERVE=0 $(RUN) python -m dev demo

.PHONY: release-dry-run
release-dry-run: install redis-bin ## release.yml's own steps here: dev, staging, prod on moto, docker/pulumi/kubectl recorded (RELEASE_DRY_RUN_ARGS="--data s3 --keep")
	$(RUN) python -m dev.release_dry_run $(RELEASE_DRY_RUN_ARGS)

.PHONY: clean
clean: ## remove generated data, models and reports (keeps .venv)
	rm -rf $(DEMO_DIR) .pytest_cache .mypy_cache .ruff_cache
