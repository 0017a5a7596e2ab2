# Two set-up commands for a fresh clone (Python 3.11):
#   make demo   the original's whole job on PubFig83 with the shipped model
#   make test   the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DATA ?= $(or $(FACEGALLERY_DATA),../shared/data/pubfig83)
OUT ?= out/demo

.PHONY: demo test lint clean

$(BIN)/facegallery: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first, pinned: here it is a local CPU wheel; pyproject itself accepts torch>=2.4
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[test,dlib,service,postgres]'
	touch $@

demo: $(BIN)/facegallery
	$(BIN)/facegallery evaluate --data $(DATA) --out $(OUT) --plots
	# PubFig83's photos are face crops: the library is read as evaluate read it, from the face cache
	$(BIN)/facegallery identify --library $(DATA)/train --detect off --top-k 3 "$$(find $(DATA)/test -name '*.jpg' | sort | head -1)"

test: $(BIN)/facegallery
	$(BIN)/python -m pytest

lint: $(BIN)/facegallery
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

clean:
	rm -rf $(VENV) out
