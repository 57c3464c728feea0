# medrlhf: `make run` starts the product on the embedded default, `make test` tests it.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test test-fast test-research venv lock lint bench-load bench-hotpath bench-export bench-engine clean

$(STAMP): pyproject.toml requirements.lock
	@test -n "$(PYTHON)" || { echo "need python3.11 on PATH"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first: the CPU build from the local wheel, never the CUDA one.
	$(PY) -m pip install -q torch==2.13.0
	# The exact versions of requirements.lock (pyproject.toml keeps ranges).
	$(PY) -m pip install -q -c requirements.lock -e ".[dev]"
	touch $(STAMP)

venv: $(STAMP)

# Refresh requirements.lock: the newest versions pyproject.toml's ranges
# allow, resolved in a throwaway environment (torch as above).
LOCK_VENV := $(VENV)-lock
lock:
	@test -n "$(PYTHON)" || { echo "need python3.11 on PATH"; exit 1; }
	rm -rf $(LOCK_VENV) && $(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip install -q --upgrade pip
	$(LOCK_VENV)/bin/python -m pip install -q torch==2.13.0
	$(LOCK_VENV)/bin/python -m pip install -q -e ".[dev]"
	{ echo "# Exact versions that make venv, make run, make test and CI install, as"; \
	  echo "# constraints on pyproject.toml's ranges. Refresh with make lock."; \
	  echo "# torch: installed first from the CPU build (+cpu dropped here, so a"; \
	  echo "# GPU machine's torch 2.13.0 build satisfies it too)."; \
	  $(LOCK_VENV)/bin/python -m pip freeze --exclude-editable \
	    | sed -E 's/^(torch==[^+]*)\+.*$$/\1/'; } > requirements.lock
	rm -rf $(LOCK_VENV)

run: $(STAMP)
	$(PY) manage.py migrate --noinput -v0
	$(PY) manage.py demo_setup
	$(PY) manage.py run_embedded

# The product's tests; the research experiments' own tests are test-research.
test: $(STAMP)
	$(PY) -m pytest -p no:cacheprovider -m "not research" $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(PY) -m pytest -p no:cacheprovider -m "not browser and not worker and not slow and not research" $(PYTEST_ARGS)

test-research: $(STAMP)
	$(PY) -m pytest -p no:cacheprovider -m research $(PYTEST_ARGS)

# mypy checks the whole project as pyproject.toml's [tool.mypy] says (strict on the engine and the services).
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m mypy

# Physicians look at an image for seconds: 1.5-4.5 s between seeing and rating.
bench-load: $(STAMP)
	$(PY) bench/load.py --think-ms 3000

bench-hotpath: $(STAMP)
	$(PY) bench/hotpath.py

bench-export: $(STAMP)
	$(PY) bench/export.py

bench-engine: $(STAMP)
	$(PY) bench/engine.py $(BENCH_ENGINE_ARGS)

clean:
	rm -rf var/broker var/media var/*.sqlite3*
