# Two entry points: `make lab` for learners, `make test` for everyone else.
# Both create .venv on first use and reinstall only when pyproject.toml changes.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
JOBS   ?= 2
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root,)

.PHONY: install lab test test-fast build audit mutation clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)  ## create .venv and install the course and its tools

lab: $(STAMP)  ## open the learner notebooks in JupyterLab
	$(BIN)/jupyter lab notebooks/ $(ROOT_FLAG)

test: $(STAMP)  ## the whole suite, as CI runs it
	$(BIN)/python -m pytest -n $(JOBS) --durations=8

test-fast: $(STAMP)  ## everything except executing whole notebooks
	$(BIN)/python -m pytest -m "not slow"

build: $(STAMP)  ## regenerate notebooks/ from solutions/
	$(BIN)/roadmap build

audit:  ## the static conventions audit (needs ../shared beside the checkout)
	$(BIN)/python ../shared/tools/audit_curriculum.py .

mutation: $(STAMP)  ## the full mutation measurement: every generated mutant of every reference (minutes)
	$(BIN)/python scripts/mutation_score.py --jobs $(JOBS) --show-survivors

clean:
	rm -rf $(VENV) .pytest_cache
