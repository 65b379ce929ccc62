# Two commands get a fresh machine going: `make demo` and `make test`.
# Both create .venv if missing, install what they need (apt packages when root),
# are quiet when already set up, then run.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip -q --disable-pip-version-check
LEGACY := .venv-tflite-legacy
# Runtime: PortAudio (microphone), libsndfile (audio files).
# Tests and corpus building: the offline TTS engines and ffmpeg (codec augmentation).
APT_RUNTIME := libportaudio2 libsndfile1
APT_DEV := espeak-ng ffmpeg flite festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts \
	festvox-italp16k festvox-itapc16k festvox-czech-dita festvox-ru festvox-suopuhe-lj festvox-ca-ona-hts

.PHONY: demo test test-all bench system-runtime system-dev clean

demo: system-runtime $(VENV)/.runtime-stamp
	@$(VENV)/bin/edge-cm demo

test: system-dev $(VENV)/.dev-stamp $(LEGACY)/.stamp
	@$(PY) -m pytest -q

bench: $(VENV)/.dev-stamp
	$(PY) benchmarks/runtime.py --hour-file --out benchmarks/results/runtime.md

$(PY):
	@$(PYTHON) -m venv $(VENV)
	@$(PIP) install --upgrade pip >/dev/null

$(VENV)/.runtime-stamp: pyproject.toml | $(PY)
	@echo "installing edge-cm runtime into $(VENV)"
	@$(PIP) install -e ".[tflite,mic]"
	@touch $@

# torch first, pinned: the CPU wheel on disk (a bare "torch" would pull CUDA builds).
$(VENV)/.dev-stamp: pyproject.toml | $(PY)
	@echo "installing edge-cm with [train,export,dev] into $(VENV)"
	@$(PIP) install "torch==2.13.0"
	@$(PIP) install -e ".[tflite,mic,train,export,dev]"
	@touch $(VENV)/.runtime-stamp $@

# A second environment with numpy<2 for the legacy tflite-runtime interpreter.
$(LEGACY)/.stamp: pyproject.toml
	@echo "creating $(LEGACY) (tflite-runtime 2.14, numpy<2)"
	@$(PYTHON) -m venv $(LEGACY)
	@$(LEGACY)/bin/python -m pip -q --disable-pip-version-check install "numpy<2" "tflite-runtime==2.14.0" -e .
	@touch $@

system-runtime:
	@bash tools/apt-install.sh $(APT_RUNTIME)

system-dev:
	@bash tools/apt-install.sh $(APT_RUNTIME) $(APT_DEV)

clean:
	rm -rf $(VENV) $(LEGACY) .pytest_cache build *.egg-info
