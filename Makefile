# Two commands do all the setup (README): `make demo` and `make test`.
# Both create .venv on first use (from the pinned requirements.txt) and reuse it afterwards.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_OUT ?= demo-out
DEMO_ARGS ?= --no-notebooks

.PHONY: demo test bench lint typing mutation fixtures assign clean

$(STAMP): requirements.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -r requirements.txt
	$(PY) -m pip install --disable-pip-version-check -q --no-deps --no-build-isolation -e .
	@touch $(STAMP)

## Grade the bundled sample submissions and print the gradebook. Function tests only by default:
## executing every sample's notebooks takes hours on 2 cores (`make demo DEMO_ARGS=` does it).
## Resumable: run it again and only what changed is graded. Ids are <kind>-<name>.
demo: $(STAMP)
	$(VENV)/bin/hw4grade grade fixtures/submissions --out $(DEMO_OUT) --workers 2 $(DEMO_ARGS)

## The test suite. pytest's exit code 5 ("no tests collected") is a failure here on purpose:
## an empty suite must never pass as green.
test: $(STAMP)
	@$(PY) -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests -- treating as failure"; exit 1; fi; \
	exit $$rc

## Benchmarks (minutes; not part of the test suite).
bench: $(STAMP)
	$(PY) benchmarks/run.py

lint: $(STAMP)
	$(PY) -m pip install -q -r requirements-dev.txt
	$(VENV)/bin/ruff check grader reference tests

typing: $(STAMP)
	$(PY) -m pip install -q -r requirements-dev.txt
	$(VENV)/bin/mypy

mutation: $(STAMP)
	$(PY) -m pip install -q -r requirements-dev.txt
	$(PY) tests/mutation/run.py

fixtures: $(STAMP)
	$(PY) -m pip install -q -r requirements-dev.txt
	$(PY) fixtures/build_fixtures.py

assign: $(STAMP)
	$(VENV)/bin/hw4grade assign

clean:
	rm -rf $(DEMO_OUT) .hypothesis build *.egg-info
