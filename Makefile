# Two entry points (README quickstart): `make study` runs the main job, `make test` the tests.
# Both create .venv on first use, install the CPU torch wheel that lies on disk,
# then spindoctor with its test extras.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.spindoctor-installed

.PHONY: install study demo test test-slow lint bench clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

study: $(STAMP)
	$(VENV)/bin/spindoctor study --config organism --out runs/organism

demo: $(STAMP)
	$(VENV)/bin/spindoctor game stats
	$(VENV)/bin/spindoctor game deal --split ood --n 3 --seed 0
	$(VENV)/bin/spindoctor game solve 3 3 8 8 --all
	$(VENV)/bin/spindoctor game check --cards 3,3,8,8 --answer "8/(3-8/3)=24" --json
	$(VENV)/bin/spindoctor game export --out runs/demo/data --n-train 200 --n-probe 100 --seed 0

test: $(STAMP)
	$(PY) -m ruff check src tests bench
	$(PY) -m pytest -q

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

bench: $(STAMP)
	$(PY) bench/game.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
