# Two commands do all the setup (README): `make demo` and `make test`.
# Both create .venv on first use (from the pinned requirements.txt) and reuse it afterwards.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_OUT ?= demo-out
DEMO_ALL_OUT ?= demo-out-all
DEMO_ARGS ?= --no-notebooks
# The demo's representative set, <kind>/<name> under fixtures/submissions: the solution, an
# accepted alternative, three realistic bugs (one per lab) and a hostile submission.
DEMO_SET ?= correct/reference alternative/lab2_sort_threshold buggy/lab1_gd_missing_factor_2 \
	buggy/lab2_global_per_layer_threshold buggy/lab3_floor_rounding malicious/mal_read_tests
DEMO_SUBS := build/demo-submissions
# Bytecode caches on for everything here: with PYTHONDONTWRITEBYTECODE set (some shells and
# container images set it), a fresh clone never caches the grader's bytecode or pytest's rewritten
# rubric tests, and every grading compiles them again.
unexport PYTHONDONTWRITEBYTECODE

.PHONY: demo demo-all test bench suite-cpu lint typing mutation fixtures assign clean

$(STAMP): requirements.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -r requirements.txt
	$(PY) -m pip install --disable-pip-version-check -q --no-deps --no-build-isolation -e .
	@touch $(STAMP)

## Grade a small representative set of the bundled samples (DEMO_SET, a few minutes) and print the
## gradebook and where the class summary is; `make demo-all` grades every bundled sample. Function
## tests only by default: executing the notebooks takes minutes per sample (`DEMO_ARGS=` does it).
## Resumable: run it again and only what changed is graded. Ids are <kind>-<name>.
demo: $(STAMP)
	@rm -rf $(DEMO_SUBS)
	@for s in $(DEMO_SET); do mkdir -p $(DEMO_SUBS)/$$(dirname $$s) && cp -R fixtures/submissions/$$s $(DEMO_SUBS)/$$s; done
	$(VENV)/bin/hw4grade grade $(DEMO_SUBS) --out $(DEMO_OUT) --layout grouped --workers 2 $(DEMO_ARGS)
	@echo "Class summary (plots, pass rate per item): $(DEMO_OUT)/summary.html; each student's feedback: $(DEMO_OUT)/<student>/feedback.md"

demo-all: $(STAMP)
	$(VENV)/bin/hw4grade grade fixtures/submissions --out $(DEMO_ALL_OUT) --layout grouped --workers 2 $(DEMO_ARGS)
	@echo "Class summary (plots, pass rate per item): $(DEMO_ALL_OUT)/summary.html"

## The test suite. pytest's exit code 5 ("no tests collected") is a failure here on purpose:
## an empty suite must never pass as green.
test: $(STAMP)
	@$(PY) -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests -- treating as failure"; exit 1; fi; \
	exit $$rc

## Benchmarks (minutes; not part of the test suite).
bench: $(STAMP)
	$(PY) benchmarks/run.py

## The suite with each test's CPU counted in a cgroup of its own (root only), then the report.
suite-cpu: $(STAMP)
	PYTHONPATH=$(CURDIR)/benchmarks SUITE_CPU_OUT=$(CURDIR)/suite-cpu.jsonl $(PY) -m pytest -p suite_cpu $(PYTEST_ARGS); \
	$(PY) benchmarks/suite_cpu.py report suite-cpu.jsonl

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
	rm -rf $(DEMO_OUT) $(DEMO_ALL_OUT) .hypothesis build *.egg-info
