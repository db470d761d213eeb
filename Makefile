# Two entry points: `make lab` for learners, `make test` for everyone else.
# Both create .venv on first use and reinstall only when pyproject.toml changes.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
JOBS   ?= 2
# the PyTorch pin, read from pyproject.toml (the one place it is kept)
TORCH  := $(shell grep -o '"torch==[^"]*"' pyproject.toml | tr -d '"')
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root,)
# your own copies of the notebooks (git-ignored); `roadmap` reads the same variable
WORKSPACE := $(or $(SAFETY_ROADMAP_WORKSPACE),workspace)

.PHONY: install lab test test-fast build audit mutation clean

$(STAMP): pyproject.toml
	@echo "==> Setting up $(VENV): the course, PyTorch (CPU), JupyterLab and nbgrader."
	@echo "==> The first time this installs about 2 GB (PyTorch is most of it) and takes a few minutes; each step shows its progress."
	$(PYTHON) -m venv $(VENV)
	@# PyTorch first, with pip: where a machine keeps the CPU wheel on disk (pip's find-links), pip uses it.
	$(BIN)/python -m pip install --disable-pip-version-check --progress-bar on '$(TORCH)' uv
	@# Everything else with uv, which downloads and installs in parallel: minutes faster than pip on a fresh
	@# machine. Bytecode is compiled now: where PYTHONDONTWRITEBYTECODE is set, nothing would ever cache it, and
	@# every kernel would recompile each module it imports.
	UV_NATIVE_TLS=1 $(BIN)/uv pip install --compile-bytecode --python $(BIN)/python -e '.[dev]'
	@# no "get notified about Jupyter news?" prompt in the learner's first lab (only this environment's setting)
	$(BIN)/jupyter labextension disable --level=sys_prefix @jupyterlab/apputils-extension:announcements >/dev/null 2>&1 || true
	touch $(STAMP)
	@echo "==> $(VENV) is ready."

install: $(STAMP)  ## create .venv and install the course and its tools

lab: $(STAMP)  ## open your workspace in JupyterLab (created, or given new chapters, first)
	$(BIN)/roadmap workspace
	$(BIN)/jupyter lab $(WORKSPACE) $(ROOT_FLAG)

test: $(STAMP)  ## the whole suite, as CI runs it
	$(BIN)/python -m pytest -n $(JOBS) --dist worksteal --durations=8

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
