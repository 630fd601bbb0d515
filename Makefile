# Two commands: `make train` (the default run: DLinear on the bundled ETTh1) and `make test`.
# Each creates .venv on first use with the right torch (a CPU build unless a CUDA GPU is
# visible; choose another with TORCH=cpu|cuda|'torch==<version>') and the package's [dev] extras.
# Pass arguments through ARGS: make train ARGS="model=karma data.pred_len=336".

PYTHON ?= python3
VENV ?= .venv
TORCH ?= auto
ARGS ?=
PY := $(VENV)/bin/python
# one torch thread: on a shared 2-core machine two threads were measured up to 10x slower
THREADS := OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
# the suite in one process per core (pytest-xdist), each test file kept on one process so that a
# file's module fixtures (an MLflow server, trained models) are built once; WORKERS=0 runs it in one
WORKERS ?= auto
XDIST := $(if $(filter 0,$(WORKERS)),,-n $(WORKERS) --dist loadfile)

.PHONY: setup train test test-slow docs

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml scripts/setup_env.py
	$(PYTHON) scripts/setup_env.py --venv $(VENV) --torch "$(TORCH)"
	@touch $@

train: setup
	$(THREADS) $(PY) train.py $(ARGS)

test: setup
	$(THREADS) $(PY) -m pytest -q $(XDIST) $(ARGS)

test-slow: setup  # the long trainings marked slow (paper schedules), run manually or on a schedule
	$(THREADS) $(PY) -m pytest -q -m slow $(ARGS)

docs: setup
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict
