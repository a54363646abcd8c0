# spikejax: two commands.
#   make demo   -- set everything up (.venv) and run the main job on bundled data -> out/demo/
#   make test   -- set everything up (.venv) and run the test suite (slow tests excluded)
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
# two pytest workers: XLA compilation (most of the suite's time) is single-threaded; whole files per
# worker (--dist loadfile) so a file's fixtures and compiled programs are built once; a worker that
# crashes is not replaced (the run reports it and ends instead of rescheduling its file)
PYTEST_ARGS ?= -n 2 --dist loadfile --max-worker-restart=0

# the second stack: Python >= 3.12 with the newest jax the registry serves (jax >= 0.11 needs 3.12)
PYTHON_NEW ?= $(shell .ci/find-python)
VENV_NEW   := .venv-new
PY_NEW     := $(VENV_NEW)/bin/python
STAMP_NEW  := $(VENV_NEW)/.installed-stamp

.PHONY: demo demo-full test test-newest test-slow setup docs bench bench-quick wheel wheel-test clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	@touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/spikejax demo --out out/demo

# the demo with the full-size fits (meso: the marginal-likelihood fit_em, ~5 min more on 2 cores)
demo-full: $(STAMP)
	$(VENV)/bin/spikejax demo --full --out out/demo-full

test: $(STAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS)

$(STAMP_NEW): pyproject.toml
	@test -x $(PY_NEW) || $(PYTHON_NEW) -m venv $(VENV_NEW)
	$(PY_NEW) -m pip install --quiet --upgrade pip
	$(PY_NEW) -m pip install --quiet --upgrade -e ".[test]" jax jaxlib
	@touch $(STAMP_NEW)

# the suite on the newest stack (CI runs both: .ci/run)
test-newest: $(STAMP_NEW)
	@$(PY_NEW) -c "import sys, jax; print(f'[test-newest] Python {sys.version.split()[0]}, jax {jax.__version__}')"
	$(PY_NEW) -m pytest -q $(PYTEST_ARGS)

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow $(PYTEST_ARGS)

docs: $(STAMP)
	$(PY) -m pip install --quiet -e ".[docs]"
	$(PY) -m sphinx -W --keep-going -b html docs docs/_build/html

# the peers need torch: take 2.13.0 (on the developers' and CI machines a CPU build on local disk) before
# the bench extra, whose plain `torch>=2.2` would otherwise resolve to a multi-GB CUDA build
BENCH_SETUP = $(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install --quiet "torch==2.13.0"; \
	$(PY) -m pip install --quiet -e ".[bench]"; \
	$(PY) -m pip install --quiet --no-deps "spikeometric==1.0.3"

bench: $(STAMP)
	$(BENCH_SETUP)
	@for b in benchmarks/gfr_fit.py benchmarks/gfr_network.py benchmarks/glm.py benchmarks/l5.py benchmarks/lfads.py benchmarks/lfads_anchor.py benchmarks/meso.py; do echo "== $$b"; $(PY) $$b || exit 1; done

# one quick row per family against its peer (under 15 min on 2 cores) -> summary table in benchmarks/RESULTS.md
bench-quick: $(STAMP)
	$(BENCH_SETUP)
	$(PY) benchmarks/quick.py

# the wheel, built from the source tree (setuptools in pip's isolated build environment) -> dist/
WHEEL_DIR ?= dist
wheel:
	rm -f $(WHEEL_DIR)/spikejax-*.whl
	$(PYTHON) -m pip wheel --quiet --no-deps . -w $(WHEEL_DIR)
	@ls $(WHEEL_DIR)/spikejax-*.whl

# what a user gets: the wheel installed in a fresh virtual environment outside the source tree
# (a current pip; dependencies from pip's cache or the registry), then `spikejax --version`, the
# metadata `pip show` reads, and `spikejax demo --quick` run from an empty folder with a fresh
# compilation cache
WHEEL_TEST_DIR ?= $(shell mktemp -d -t spikejax-wheel-test.XXXXXX)
wheel-test: wheel
	@set -e; d="$(WHEEL_TEST_DIR)"; src="$$(pwd)"; whl="$$(ls $$src/$(WHEEL_DIR)/spikejax-*.whl)"; \
	echo "[wheel-test] $$whl -> fresh venv in $$d"; \
	$(PYTHON) -m venv "$$d/venv"; \
	"$$d/venv/bin/python" -m pip install --quiet --upgrade pip; \
	"$$d/venv/bin/python" -m pip install --quiet "$$whl"; \
	cd "$$d"; \
	"$$d/venv/bin/spikejax" --version; \
	"$$d/venv/bin/python" -m pip show --verbose spikejax | grep -E '^(Name|Version|Home-page|License|Project-URLs|  [A-Z][a-z]+, http)'; \
	"$$d/venv/bin/python" -c "import importlib.metadata as m, spikejax, pathlib; md = m.metadata('spikejax'); \
	urls = md.get_all('Project-URL') or []; assert md['Version'] == spikejax.__version__, md['Version']; \
	assert any(u.startswith('Homepage') for u in urls), urls; \
	assert 'site-packages' in spikejax.__file__, spikejax.__file__; print('[wheel-test] metadata ok:', spikejax.__file__)"; \
	SPIKEJAX_CACHE_DIR="$$d/cache" "$$d/venv/bin/spikejax" demo --quick --out "$$d/demo"; \
	test -s "$$d/demo/summary.json"; \
	echo "[wheel-test] ok"; rm -rf "$$d"

clean:
	rm -rf $(VENV) $(VENV_NEW) out docs/_build .pytest_cache
