# One command per job on a fresh machine; each sets up .venv first (about 5 minutes the first time).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup run test book lab clean

$(BIN)/.installed: pyproject.toml setup.py share/jupyter/kernels/splip/kernel.json
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install -e '.[dev]'
	touch $@

setup: $(BIN)/.installed

# The main job: train + evaluate on the embedded synthetic data (CPU, a few minutes), executed
# notebook written to book/train.ipynb, checkpoint and metrics to runs/synthetic/.
run: setup
	$(BIN)/papermill notebooks/train.ipynb book/train.ipynb

# Unit tests and every notebook at its small defaults.
test: setup
	$(BIN)/pytest --nbval

# Execute every notebook into book/, build the Jupyter Book (warnings are errors), then check the
# rendered pages and JupyterLab in headless Chromium (screenshots in book/_build/screenshots/).
book: setup
	command -v chromium >/dev/null && command -v chromedriver >/dev/null || (apt-get update && apt-get install -y chromium chromium-driver)
	$(BIN)/python scripts/build_book.py
	$(BIN)/python scripts/check_book.py
	$(BIN)/python scripts/check_lab.py

# JupyterLab in the repository root; the notebooks open with their kernel "splip (.venv)" (root: --allow-root).
lab: setup
	$(BIN)/jupyter lab $(if $(filter 0,$(shell id -u)),--allow-root)

clean:
	rm -rf runs book/_build .pytest_cache
