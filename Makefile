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
	$(BIN)/pip install -q -e ".[all,test]"  # all: the viewer, OpenVINO and Micro-Manager extras
	touch $@

setup: $(BIN)/live-pssr

# Opens the viewer where there is a display, runs headless otherwise.
demo: setup
	$(BIN)/live-pssr demo --out runs/demo.ome.zarr --overwrite $(ARGS)

test: setup
	$(BIN)/ruff check .
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest -q $(ARGS)

bench: setup
	$(BIN)/live-pssr bench pipeline --json bench-results/pipeline.json

.PHONY: setup demo test bench
