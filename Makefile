# tunebatch — every target installs what it needs first, so `make demo` and `make test` work on a
# fresh Debian machine with Python 3.11 and root (sudo is used when not root).

PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# What the renderer runs (the cpu-worker image has the same), and what the tests and the gallery
# check use beside it: a Redis server and a real browser.
RENDER_PACKAGES := abcmidi timidity freepats abcm2ps vorbis-tools lame flac librsvg2-bin fluidsynth fluid-soundfont-gm bubblewrap
TEST_PACKAGES := redis-server chromium chromium-driver
APT_PACKAGES := $(RENDER_PACKAGES) $(TEST_PACKAGES)
DEMO_DIR ?= artifacts
DEMO_EPOCHS ?=

export TF_CPP_MIN_LOG_LEVEL ?= 2

.DEFAULT_GOAL := help
.PHONY: help system venv install demo test test-fast chaos lint format bench clean abcjs
.PHONY: base-images images images-prune compose-test

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'

$(VENV)/.system-stamp:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if ! $(PYTHON) -c 'import ensurepip, venv' >/dev/null 2>&1; then missing="$$missing python3-venv"; fi; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	@mkdir -p $(VENV) && touch $@

system: $(VENV)/.system-stamp ## Install the Debian packages (abcmidi, timidity, abcm2ps, encoders, bubblewrap, redis, chromium)

$(BIN)/producer: pyproject.toml | $(VENV)/.system-stamp
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@touch $@

venv: $(BIN)/producer ## Create .venv with tunebatch and its dev tools

install: system venv ## Everything: Debian packages and the virtualenv

demo: install ## Import O'Neill's, train the small preset (~6 min on CPU), generate and render 20 tunes, write their gallery
	TUNEBATCH_DATA_DIR=$(DEMO_DIR) $(BIN)/producer corpus import oneills --valid-only
	TUNEBATCH_DATA_DIR=$(DEMO_DIR) $(BIN)/producer train --corpus oneills --preset small $(if $(DEMO_EPOCHS),--epochs $(DEMO_EPOCHS))
	TUNEBATCH_DATA_DIR=$(DEMO_DIR) $(BIN)/producer submit-batch --count 20 --model latest --temperature 0.8 --formats abc,mid,wav,svg,ogg
	@echo; echo "Your tunes (ABC, MIDI, WAV, SVG, OGG) and manifest.json are in $(DEMO_DIR)/batches/<batch id>/"; \
	ls -d $(DEMO_DIR)/batches/*/ | tail -n 1
	@batch=$$(basename $$(ls -d $(DEMO_DIR)/batches/*/ | tail -n 1)); echo; \
	echo "The gallery (sheet music, playback, quality; open it in a browser):"; \
	TUNEBATCH_DATA_DIR=$(DEMO_DIR) $(BIN)/producer gallery $$batch

test: install ## Install everything and run every test (starts its own redis-server, S3 server, workers)
	$(BIN)/pytest

test-fast: venv ## Run the tests without reinstalling
	$(BIN)/pytest -x -q

CHAOS_REPORT ?= chaos-report.json

chaos: venv ## Chaos suite at full size (1,000 tunes, 10 worker kills, 3 Redis restarts); figures in chaos-report.json
	TUNEBATCH_CHAOS_SCALE=full TUNEBATCH_CHAOS_REPORT=$(abspath $(CHAOS_REPORT)) $(BIN)/pytest tests/chaos -q -s -p no:cacheprovider
	$(BIN)/python -m tests.chaos.driver $(abspath $(CHAOS_REPORT))

lint: venv ## ruff (lint + format check) and mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: venv ## Format the code with ruff
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: venv ## Print generation speed side by side with the original per-char predict loop
	$(BIN)/python bench/generation.py

ABCJS_VERSION ?= $(shell cat producer/gallery_assets/abcjs/VERSION)

abcjs: ## Re-vendor abcjs for the gallery from the npm registry (ABCJS_VERSION=x.y.z to change it)
	scripts/update_abcjs.sh $(ABCJS_VERSION)

clean: ## Remove the virtualenv and caches (keeps artifacts/)
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info

# --- images and the Compose stack (docs/deploy.md) ---------------------------------------------
TUNEBATCH_TAG ?= dev
UPSTREAM_PYTHON_IMAGE := python:3.11.14-slim-bookworm
LOCAL_PYTHON_IMAGE := local/python:3.11-bookworm
# The pinned upstream base when the registry answers, else the one base-images builds from Debian.
PYTHON_IMAGE ?= $(shell docker image inspect $(UPSTREAM_PYTHON_IMAGE) >/dev/null 2>&1 \
	|| docker pull -q $(UPSTREAM_PYTHON_IMAGE) >/dev/null 2>&1 \
	&& echo $(UPSTREAM_PYTHON_IMAGE) || echo $(LOCAL_PYTHON_IMAGE))
IMAGES := cpu-worker producer gpu-worker

base-images: ## Build base images (Python 3.11, Redis, an S3 server) from Debian packages alone
	docker/local/build-bases.sh

images: $(if $(filter local/%,$(PYTHON_IMAGE)),base-images) ## Build cpu-worker, gpu-worker, producer; run them as k8s does
	@for role in $(IMAGES); do \
	  echo "== tunebatch/$$role:$(TUNEBATCH_TAG) (base $(PYTHON_IMAGE))"; \
	  docker build --network host --build-arg PYTHON_IMAGE=$(PYTHON_IMAGE) \
	    -f docker/$$role.Dockerfile -t tunebatch/$$role:$(TUNEBATCH_TAG) . || exit 1; \
	done
	python3 -m tests.compose.images $(TUNEBATCH_TAG)
	@n=$$(docker images -q --filter label=$(BUILD_STAGE_LABEL) | wc -l); [ "$$n" = 0 ] || \
	  echo "note: $$n untagged build-stage images are kept as the cache that makes the next" \
	    "'make images' take seconds, not minutes (several GB: docker system df); 'make images-prune'" \
	    "removes them and nothing else"

# The legacy builder (Debian's docker.io has no buildx) keeps every build stage as an untagged
# image: ~10 GB after the first build, mostly TensorFlow's wheels in the gpu-worker's build stage.
# They are the layer cache of `make images`: removing them makes the next build reinstall every
# dependency (~11 min on 2 cores). Only images carrying our build-stage label are removed.
BUILD_STAGE_LABEL := org.tunebatch.stage=build
images-prune: ## Remove the build-stage images `make images` keeps as its cache (GBs; next build is slow)
	docker image prune -f --filter label=$(BUILD_STAGE_LABEL)
	docker system df

# Builds first what it runs: the development virtualenv on the host (`venv`, ~4 min the first
# time: the audit and the producer's checks run on the host), the base images where no registry
# answers (~6 min) and the three images (~11 min, seconds when only code changed).
compose-test: venv images ## Compose stack: 200 tunes, Redis SIGKILLed 20 s, a worker killed, beat every minute (~15 min)
	$(BIN)/python -m tests.compose.run
