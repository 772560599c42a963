# fdb-pipeline: every command a user or CI needs. `make help` lists them.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
SERVER_VENV ?= .venv-server
PERSONAPLEX_VENV ?= .venv-personaplex
ASR_VENV ?= .venv-asr
LOWEST_VENV ?= .venv-lowest
UV_SPEC := uv==0.13.9
PY := $(VENV)/bin/python
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_PACKAGES := libopus0 espeak-ng sox git

.DEFAULT_GOAL := help
.PHONY: help setup system-packages venv server-env personaplex-env asr-env tiny-asr docker-engine slurm-cluster apptainer \
	test test-unit lint lowest-env test-floors bench-client bench-encoder bench-orchestration bench-slurm \
	eval-models eval-goldens bench-eval \
	image image-cpu image-cpu-personaplex sif sif-cpu bench demo reproduce tiny-model tiny-personaplex clean

IMAGE ?= fdb-server:latest
CPU_IMAGE ?= fdb-server:cpu-test
PERSONAPLEX_CPU_IMAGE ?= fdb-server:personaplex-cpu-test
SIF ?= personaplex.sif
PROFILE ?= personaplex
# the CPU variant of apptainer.def (tests, demo, the Slurm tests): scripts/build-cpu-sif.sh
CPU_SIF ?= .cache/apptainer/cpu-$(PROFILE).sif
# a system apptainer/singularity comes first; else the one scripts/apptainer-setup.sh prepares
export PATH := $(PATH):$(abspath .cache/apptainer/bin)
DATA ?=
RUNTIME ?=
GPUS ?= 0
# v1.5: both passes (input.wav and clean_input.wav); a v1.0 task gets its one pass
PREFIX ?= both
ARGS ?=
# evaluate: FDB_REPO (the user's Full-Duplex-Bench checkout), EVAL_DIR, EVAL_ARGS (more flags);
# OUTPUT_ROOT: outputs out of a read-only dataset (bench and evaluate)
OUTPUT_ROOT ?=
FDB_REPO ?=
EVAL_DIR ?=
EVAL_ARGS ?=
DEMO_DIR ?= .cache/demo
TINY_MODEL := $(abspath .cache/tiny-moshi/demo)
TINY_PERSONAPLEX := $(abspath .cache/tiny-personaplex/demo)
TINY_FLAGS = --server-arg=--config-path=$(TINY_MODEL)/config.json \
	--server-arg=--moshi-weight=$(TINY_MODEL)/model.safetensors \
	--server-arg=--mimi-weight=$(TINY_MODEL)/mimi.safetensors \
	--server-arg=--tokenizer=$(TINY_MODEL)/tokenizer.model

help: ## list the commands
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

# Every set-up step is idempotent: a second call costs seconds (dpkg -s, stamp files, `docker
# info`, the Slurm script's own checks), so `make demo` and `make test` each install what they
# need on a bare machine.
setup: system-packages venv eval-models asr-env server-env personaplex-env docker-engine slurm-cluster apptainer ## install everything the tests need (apt, venvs, Docker, Slurm, Apptainer)

system-packages: ## apt packages: libopus (codec), espeak-ng + sox (test speech)
	@if ! dpkg -s $(APT_PACKAGES) >/dev/null 2>&1; then \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $(APT_PACKAGES); \
	fi

venv: $(VENV)/.installed ## the client's venv (light: no PyTorch) with test tools

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,eval]'
	touch $@

# The silero VAD model of `evaluate`: the pinned silero-vad wheel (not installed: its import needs
# PyTorch); pipeline/evaluate/vad_model.py reads silero_vad.onnx from it and checks its sha256.
SILERO_VAD_VERSION := $(shell sed -n 's/^SILERO_VERSION = "\(.*\)"/\1/p' pipeline/evaluate/vad_model.py)
EVAL_WHEELS := .cache/eval-wheels
eval-models: venv ## the pinned silero VAD wheel for `evaluate` (one download, ~11 MB)
	@test -f $(EVAL_WHEELS)/silero_vad-$(SILERO_VAD_VERSION)-py3-none-any.whl || \
		$(PY) -m pip download -q --no-deps --only-binary=:all: \
			silero-vad==$(SILERO_VAD_VERSION) -d $(EVAL_WHEELS)
	$(PY) -c "from pipeline.evaluate.vad_model import model_bytes; model_bytes()"

GOLDEN_VENV ?= .cache/venv-goldens
FDB_REPO ?=
eval-goldens: ## re-make tests/evaluate/goldens.json with FDB's own scripts: make eval-goldens FDB_REPO=...
	@test -n "$(FDB_REPO)" || { echo "usage: make eval-goldens FDB_REPO=/path/to/Full-Duplex-Bench"; exit 2; }
	bash scripts/goldens-env.sh $(GOLDEN_VENV) $(SILERO_VAD_VERSION)
	$(GOLDEN_VENV)/bin/python scripts/eval_goldens.py --fdb-repo $(FDB_REPO)

bench-eval: venv eval-models tiny-asr ## evaluation cost per hour of audio (VAD, resample, timing, rules, tiny ASR)
	PYTHONPATH=. $(PY) scripts/bench_eval.py --asr-model $(TINY_ASR)

# The `asr` stage of `evaluate`: NeMo (pinned) on the CPU torch, in a venv of its own; the client
# venv stays free of torch and NeMo.
asr-env: $(ASR_VENV)/.installed ## a separate venv with NVIDIA NeMo (pinned, CPU torch) for `evaluate --stage asr`

$(ASR_VENV)/.installed: scripts/setup-asr-env.sh
	bash scripts/setup-asr-env.sh $(ASR_VENV)
	touch $@

# A tiny random FastConformer-TDT (.nemo, ~600 KB) for the tests and the demo: built offline, once
# per version of its script (the tests build it too, through the same path).
TINY_ASR = .cache/tiny-asr/$(shell sha256sum containers/tiny_asr/make_tiny_asr.py | cut -c1-12)/tiny-asr.nemo
tiny-asr: asr-env ## the tiny random ASR model for tests and the demo -> .cache/tiny-asr/
	@test -f $(TINY_ASR) || $(ASR_VENV)/bin/python containers/tiny_asr/make_tiny_asr.py $(TINY_ASR)

server-env: $(SERVER_VENV)/.installed ## a separate venv with the real upstream moshi server (CPU torch) for tests/demo

$(SERVER_VENV)/.installed: scripts/setup-server-env.sh
	bash scripts/setup-server-env.sh $(SERVER_VENV)
	touch $@

personaplex-env: $(PERSONAPLEX_VENV)/.installed ## a separate venv with NVIDIA's PersonaPlex server (pinned commit, CPU torch)

$(PERSONAPLEX_VENV)/.installed: scripts/setup-personaplex-env.sh containers/personaplex/pin.env
	bash scripts/setup-personaplex-env.sh $(PERSONAPLEX_VENV)
	touch $@

docker-engine: ## install and start a local Docker engine (tests, CPU image)
	bash scripts/docker-engine.sh start

slurm-cluster: ## install and start a one-node Slurm (munge, slurmctld, slurmd); SLURM_CONF: see its env
	bash scripts/slurm-cluster.sh start

apptainer: ## a real apptainer: the system's, else Debian sid's in .cache/apptainer (scripts/apptainer-setup.sh)
	bash scripts/apptainer-setup.sh

test: setup ## install what the tests need, then run every test (CI never skips one)
	$(PY) -m pytest -ra

test-unit: venv ## only the fast tests
	$(PY) -m pytest -ra -m "not integration and not slow"

# the lint, with the tools of the venv $(1)
define lint_with
	$(1)/bin/ruff check pipeline tests scripts containers
	$(1)/bin/ruff format --check pipeline tests scripts containers
	$(1)/bin/mypy
	$(1)/bin/lint-imports --no-cache
endef

lint: venv ## ruff + mypy --strict + the import contracts of the layout
	$(call lint_with,$(VENV))

# The lowest versions pyproject.toml allows for each direct dependency (uv's lowest-direct
# resolution; uv itself is only the installer here). SSL_CERT_FILE: uv trusts the system's CA
# bundle as pip does (where the machine has one).
lowest-env: $(LOWEST_VENV)/.installed ## a venv with the lowest allowed version of each dependency

$(LOWEST_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv --clear $(LOWEST_VENV)
	$(LOWEST_VENV)/bin/python -m pip install -q '$(UV_SPEC)'
	$(if $(wildcard /etc/ssl/certs/ca-certificates.crt),SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt) \
		$(LOWEST_VENV)/bin/uv pip install -q --python $(LOWEST_VENV)/bin/python \
		--resolution lowest-direct -e '.[test,eval]'
	touch $@

test-floors: system-packages eval-models lowest-env ## prove the floors: unit tests and lint on the lowest allowed versions
	$(LOWEST_VENV)/bin/python scripts/check_floors.py
	$(LOWEST_VENV)/bin/python -m pytest -ra -p no:cacheprovider -m "not integration and not slow"
	$(call lint_with,$(LOWEST_VENV))

bench-client: venv ## client throughput and memory against a zero-cost echo server
	$(PY) scripts/bench_client.py

bench-encoder: venv ## what the server hears under each Opus encoder preset (SNR, side by side)
	PYTHONPATH=. $(PY) scripts/bench_encoder.py

bench-slurm: venv server-env slurm-cluster ## 1, 2, 3 array tasks on the local Slurm: wall time, overhead, scaling
	PYTHONPATH=. $(PY) scripts/bench_slurm.py

bench-orchestration: venv server-env docker-engine ## readiness/crash/teardown delays, pacing, in Docker
	PYTHONPATH=. $(PY) scripts/bench_orchestration.py

image: ## the PersonaPlex GPU server image (needs network; see containers/README.md)
	docker build -f containers/Dockerfile -t $(IMAGE) containers

image-cpu: docker-engine ## the CPU variant (upstream moshi, offline): base image + wheels + build
	bash scripts/build-base-image.sh fdb-base:bookworm
	bash scripts/fetch-wheels.sh
	args=(); while IFS= read -r line; do args+=(--build-arg "$$line"); done \
		< containers/wheels/cpu-build-args.txt; \
	docker build -f containers/Dockerfile -t $(CPU_IMAGE) "$${args[@]}" containers

image-cpu-personaplex: docker-engine ## the PersonaPlex CPU variant (pinned commit, offline)
	bash scripts/build-base-image.sh fdb-base:bookworm
	SERVER=personaplex bash scripts/fetch-wheels.sh
	args=(); while IFS= read -r line; do args+=(--build-arg "$$line"); done \
		< containers/wheels/personaplex-cpu-build-args.txt; \
	docker build -f containers/Dockerfile -t $(PERSONAPLEX_CPU_IMAGE) "$${args[@]}" containers

sif: ## the Apptainer image: server + this project (apptainer run --nv $(SIF) --root DATA)
	$$(command -v apptainer || command -v singularity) build $(SIF) apptainer.def

sif-cpu: apptainer ## the CPU SIF, offline: tiny PersonaPlex (PROFILE=moshi: upstream) -> $(CPU_SIF)
	bash scripts/build-cpu-sif.sh $(CPU_SIF) $(PROFILE) >/dev/null

bench: venv ## benchmark: make bench DATA=/path/to/v1.5 [RUNTIME=docker|apptainer|local] [GPUS=0,1]
	@test -n "$(DATA)" || { echo "usage: make bench DATA=/path/to/v1.5 [RUNTIME=...] [GPUS=...]"; exit 2; }
	$(PY) -m pipeline bench --root $(DATA) --runtime $(or $(RUNTIME),docker) --gpus $(GPUS) \
		--prefix $(PREFIX) $(if $(filter apptainer,$(RUNTIME)),--sif $(SIF),--image $(IMAGE)) $(ARGS)

tiny-model: server-env
	$(SERVER_VENV)/bin/python containers/tiny_moshi/make_tiny_model.py $(TINY_MODEL)

tiny-personaplex: personaplex-env
	$(PERSONAPLEX_VENV)/bin/python containers/tiny_personaplex/make_tiny_personaplex.py $(TINY_PERSONAPLEX)

# RUNTIME=slurm: the demo as a job array of 3 tasks on the local Slurm, each `apptainer run` of
# the CPU SIF; waits for the job's end and prints the merged report (exit 1: a sample failed or
# is missing). $(1): shell words that set $$model; $(2): the bench options of the tiny server.
define slurm_demo
	$(MAKE) sif-cpu slurm-cluster
	@echo "=== 3 Slurm array tasks, each apptainer run of $(CPU_SIF), the server its child ==="
	eval "$$(bash scripts/slurm-cluster.sh env)"; $(1); demo=$$(realpath -m $(DEMO_DIR)); \
	job="$$demo/slurm-$$(date +%Y%m%d-%H%M%S)"; \
	HF_HUB_OFFLINE=1 $(PY) -m pipeline slurm submit --root "$$demo/data" --run-dir "$$job" \
		--container apptainer --sif $(CPU_SIF) --shards 3 --prefix both --gpus-per-task 0 \
		--cpus-per-task 1 --hf-cache "$$demo/hf" --overwrite $(2) $(ARGS) && \
	$(PY) -m pipeline slurm report --wait --poll 2 "$$job"
endef

demo: system-packages venv ## the whole pipeline on CPU, RANDOM tiny model (PROFILE=personaplex|moshi, RUNTIME=local|docker|apptainer|slurm)
	@echo "=== DEMO: the model has RANDOM weights - the outputs are noise, the pipeline is real ==="
	$(PY) -m pipeline synth-data --out $(DEMO_DIR)/data --per-task 1
ifeq ($(PROFILE),moshi)
	$(MAKE) tiny-model
ifeq ($(RUNTIME),docker)
	$(MAKE) image-cpu
	HF_HUB_OFFLINE=1 $(PY) -m pipeline bench --root $(DEMO_DIR)/data --prefix both --runtime docker \
		--image $(CPU_IMAGE) --gpus none --profile moshi --port 0 --overwrite \
		--hf-cache $(DEMO_DIR)/hf --mount $(TINY_MODEL):$(TINY_MODEL) \
		--server-command "python /opt/tiny_moshi/serve.py" $(TINY_FLAGS) $(ARGS)
else ifeq ($(RUNTIME),apptainer)
	$(MAKE) sif-cpu
	model=$$(realpath $(TINY_MODEL)); HF_HUB_OFFLINE=1 apptainer run --bind "$$model" $(CPU_SIF) \
		--root $(DEMO_DIR)/data --prefix both --gpus none --profile moshi --port 0 --overwrite \
		--hf-cache $(DEMO_DIR)/hf --server-command "python /opt/tiny_moshi/serve.py" \
		$(subst $(TINY_MODEL),$$model,$(TINY_FLAGS)) $(ARGS)
else ifeq ($(RUNTIME),slurm)
	$(call slurm_demo,model=$$(realpath $(TINY_MODEL)),--profile moshi \
		--mount "$$model:$$model" --server-command "python /opt/tiny_moshi/serve.py" \
		$(subst $(TINY_MODEL),$$model,$(TINY_FLAGS)))
else
	HF_HUB_OFFLINE=1 $(PY) -m pipeline bench --root $(DEMO_DIR)/data --prefix both --runtime local \
		--gpus none --profile moshi --port 0 --overwrite --hf-cache $(DEMO_DIR)/hf \
		--server-command "$(SERVER_VENV)/bin/python containers/tiny_moshi/serve.py" \
		$(TINY_FLAGS) $(ARGS)
endif
else
	$(MAKE) tiny-personaplex
	@echo "=== NVIDIA's PersonaPlex server (pinned commit), voice NATF2.pt, the default text prompt ==="
ifeq ($(RUNTIME),docker)
	$(MAKE) image-cpu-personaplex
	HF_HUB_OFFLINE=1 $(PY) -m pipeline bench --root $(DEMO_DIR)/data --prefix both --runtime docker \
		--image $(PERSONAPLEX_CPU_IMAGE) --gpus none --profile personaplex --port 0 --overwrite \
		--hf-cache $(DEMO_DIR)/hf --mount $(TINY_PERSONAPLEX):$(TINY_PERSONAPLEX) \
		--server-command "python /opt/tiny_personaplex/serve.py --tiny-model $(TINY_PERSONAPLEX)" \
		--server-arg=--moshi-weight=$(TINY_PERSONAPLEX)/model.safetensors $(ARGS)
else ifeq ($(RUNTIME),apptainer)
	$(MAKE) sif-cpu
	@echo "=== the whole bench inside $(CPU_SIF): apptainer run, the server its child process ==="
	model=$$(realpath $(TINY_PERSONAPLEX)); HF_HUB_OFFLINE=1 apptainer run --bind "$$model" \
		$(CPU_SIF) --root $(DEMO_DIR)/data --prefix both --gpus none --profile personaplex --port 0 \
		--overwrite --hf-cache $(DEMO_DIR)/hf \
		--server-command "python /opt/tiny_personaplex/serve.py --tiny-model $$model" \
		--server-arg=--moshi-weight=$$model/model.safetensors $(ARGS)
else ifeq ($(RUNTIME),slurm)
	$(call slurm_demo,model=$$(realpath $(TINY_PERSONAPLEX)),--profile personaplex \
		--mount "$$model:$$model" \
		--server-command "python /opt/tiny_personaplex/serve.py --tiny-model $$model" \
		--server-arg=--moshi-weight=$$model/model.safetensors)
else
	HF_HUB_OFFLINE=1 $(PY) -m pipeline bench --root $(DEMO_DIR)/data --prefix both --runtime local \
		--gpus none --profile personaplex --port 0 --overwrite --hf-cache $(DEMO_DIR)/hf \
		--server-command "$(PERSONAPLEX_VENV)/bin/python containers/tiny_personaplex/serve.py --tiny-model $(TINY_PERSONAPLEX)" \
		--server-arg=--moshi-weight=$(TINY_PERSONAPLEX)/model.safetensors $(ARGS)
endif
endif
	@echo "=== DEMO: outputs beside the inputs in $(DEMO_DIR)/data; now the scores (evaluate," \
		"with a RANDOM tiny ASR model in place of parakeet) ==="
	$(MAKE) eval-models tiny-asr
	$(PY) -m pipeline evaluate --root $(DEMO_DIR)/data --prefix both --run-dir $(DEMO_DIR)/eval \
		--asr-model $(TINY_ASR) $(EVAL_ARGS)
	@echo "=== DEMO done: scores in $(DEMO_DIR)/eval/scores.json. The model has RANDOM weights:" \
		"its scores mean NOTHING; they prove the path from dataset to numbers ==="

reproduce: venv ## dataset to scores: make reproduce DATA=/path/to/v1.5 [RUNTIME=...] [GPUS=...] [FDB_REPO=...]
	@test -n "$(DATA)" || { echo "usage: make reproduce DATA=/path/to/v1.5 [RUNTIME=...] [FDB_REPO=...]"; exit 2; }
	$(MAKE) bench DATA="$(DATA)" RUNTIME="$(RUNTIME)" GPUS="$(GPUS)" PREFIX="$(PREFIX)" \
		ARGS="$(if $(OUTPUT_ROOT),--output-root $(OUTPUT_ROOT)) $(ARGS)"
	$(PY) -m pipeline evaluate --root $(DATA) --prefix $(PREFIX) \
		$(if $(FDB_REPO),--fdb-repo $(FDB_REPO)) $(if $(EVAL_DIR),--run-dir $(EVAL_DIR)) \
		$(if $(OUTPUT_ROOT),--output-root $(OUTPUT_ROOT)) $(EVAL_ARGS)

clean: ## remove caches (keeps the venvs)
	rm -rf .pytest_cache .mypy_cache .ruff_cache .cache
