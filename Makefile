# The README's two commands: `make demo` and `make test`. Both run `make setup` first.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.panoptic_ros_setup
PYTEST_ARGS ?=

.PHONY: setup test demo bench mutation clean

setup: $(STAMP)

$(STAMP): requirements.txt requirements-runtime.txt setup.py setup.cfg package.xml scripts/build_vision_msgs.sh $(wildcard interfaces/vision_msgs/*.txt interfaces/vision_msgs/*.xml interfaces/vision_msgs/msg/*.msg)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	scripts/build_vision_msgs.sh $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $@

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

demo: setup
	$(PY) -m panoptic_ros.demo

bench: setup
	@for b in bench/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

# Mutation testing of the core (not part of `make test`; tens of minutes on 2 cores).
# MODULES=panoptic_ros/types.py limits it to some modules; docs/testing.md has the figures.
mutation: setup
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-mutation.txt
	nice -n 15 $(PY) scripts/mutation.py $(MODULES)

clean:
	rm -rf $(VENV) .build build install log .mutation
