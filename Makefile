# Two entry points for a fresh machine (see README): `make demo` and `make test`.
PY ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU torch wheel; on a GPU workstation follow the README's GPU install instead.
TORCH ?= torch==2.13.0

$(BIN)/live-pssr: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -c constraints.txt -e ".[all,bioimageio,bench,test]"  # all: viewer, OpenVINO, Micro-Manager, napari
	touch $@

setup: $(BIN)/live-pssr

# Opens the viewer where there is a display, runs headless otherwise.
demo: setup
	$(BIN)/live-pssr demo --out runs/demo.ome.zarr --overwrite $(ARGS)

test: setup
	$(BIN)/ruff check .
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest -q $(ARGS)
	@# napari's canvas needs a real GL context: its tests again under Xvfb (they skip offscreen)
	@if command -v xvfb-run >/dev/null; then \
	  QT_QPA_PLATFORM=xcb xvfb-run -a $(BIN)/python -m pytest -q tests/test_napari_plugin.py; \
	else echo "xvfb-run not found: napari's canvas tests were skipped (apt-get install xvfb)"; fi

bench: setup
	$(BIN)/live-pssr bench pipeline --json bench-results/pipeline.json

.PHONY: setup demo test bench
