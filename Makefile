# The two commands of the README: `make demo` and `make test`. Both create .venv when missing.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.hybridvision-installed

.PHONY: demo test install lint bench clean-venv

install: $(STAMP)

# Reinstall when the dependency list changes; the project itself is installed editable.
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "Installing hybridvision and its dependencies into $(VENV) (first time: 2-3 minutes)..."
	@$(PY) -m pip install --quiet --upgrade pip 2>&1 | grep -v "is ignored" || true
	@$(PY) -m pip install --quiet --progress-bar off -e ".[dev]" 2>&1 | grep -v -e "is ignored" -e "BuildBackendWarning" || true
	@$(PY) -c "import shared" || { echo "install failed: see the pip output above"; exit 1; }
	@touch $(STAMP)

demo: $(STAMP)
	@echo "== 1/2 backbone benchmark (quick): our presets beside timm and MONAI models =="
	$(PY) -m shared.bench backbone --quick
	@echo "== 2/2 medical: train a hybrid U-Net on the MNI152 brain (nilearn), Dice per class =="
	$(PY) -m medical.demo --out runs/demo/medical
	@echo "Results: runs/bench/backbone.{md,json,png} and runs/demo/medical/runs/mni/ (summary.json, plots/)"

test: $(STAMP)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check .

bench: $(STAMP)
	$(PY) -m shared.bench backbone

clean-venv:
	rm -rf $(VENV)
