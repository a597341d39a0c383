# Newcomer commands: `make test` and `make demo`. Each sets up .venv itself (idempotent).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed
# Exact versions: constraints.txt (pyproject.toml keeps ranges; the extras are serve, webui, train, speed, all).
# CPU build of torch (a plain `torch` pulls a multi-GB CUDA build). Override for GPU: make install TORCH_SPEC=torch
TORCH_SPEC ?= torch==2.13.0
SYSTEM_PACKAGES := espeak-ng chromium ffmpeg nginx

.PHONY: install system-deps test test-all test-parity test-browser demo bench lint clean

$(STAMP): pyproject.toml constraints.txt Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip >/dev/null 2>&1 || true
	$(PIP) install -q "$(TORCH_SPEC)"
	$(PIP) install -q -c constraints.txt -e ".[all,test,ray]"
	touch $(STAMP)

install: $(STAMP)

# System packages for the tests (spoken test clips, headless browser; ffmpeg for the web UI's streamed audio;
# nginx for the tested reverse-proxy example config).
# Skipped when present.
system-deps:
	@missing=""; \
	command -v espeak-ng >/dev/null 2>&1 || missing="$$missing espeak-ng"; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	command -v ffmpeg >/dev/null 2>&1 || missing="$$missing ffmpeg"; \
	command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing="$$missing nginx"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
	  echo "installing system packages:$$missing"; \
	  $$SUDO apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

test: install system-deps
	$(PY) -m pytest -q

test-all: install system-deps
	$(PY) -m pytest -q -m "slow or not slow"

test-parity: install
	$(PY) -m pytest -q tests/parity

test-browser: install system-deps
	$(PY) -m pytest -q -m browser

# make demo [REFERENCE=ref.wav REFERENCE_TEXT="what it says"] [DEMO_TEXT="..."]
DEMO_TEXT ?= Hello! This is speech L M, a voice cloning text to speech system.
# On a CPU the demo runs the fastest configuration (int8 text2semantic weights, vocoders bf16 where measured
# faster) and says so; DEMO_FAST= (empty) runs the fp32 defaults instead.
DEMO_FAST ?= quantize=int8 precision=auto
DEMO_OUT  ?= out.wav
DEMO_ARGS ?=
demo: install
	@fast=""; if [ -n "$(DEMO_FAST)" ] && ! $(PY) -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then \
	  fast="$(DEMO_FAST)"; echo "demo: CPU, so the fastest CPU configuration: $$fast (make demo DEMO_FAST= for fp32)"; fi; \
	$(PY) infer.py task=tts text="$(DEMO_TEXT)" output="$(DEMO_OUT)" $$fast $(DEMO_ARGS) \
	  $(if $(REFERENCE),reference="$(REFERENCE)" reference_text="$(REFERENCE_TEXT)")

bench: install
	$(PY) benchmarks/generate.py --preset dual_ar_2_codebook_small
	$(PY) benchmarks/codec.py

clean:
	rm -rf $(VENV) .pytest_cache
