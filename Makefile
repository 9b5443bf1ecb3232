# allegro-ops: two commands on a fresh machine with python3:
#   make dashboard   demo workspace + the operations dashboard (Voila) on 127.0.0.1
#   make test        the whole test suite
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
DEMO_HOME ?= .demo
# today where the demo's acme lives (New York), the date its dashboard opens on
DEMO_DATE ?= $(shell TZ=America/New_York date +%F)
PORT ?= 8866

.PHONY: install demo dashboard test bench clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dashboard,notebooks,test]"
	touch $(STAMP)

install: $(STAMP)

demo: install
	@test -f $(DEMO_HOME)/allegro_ops.duckdb || $(VENV)/bin/allegro-ops --home $(DEMO_HOME) demo init
	@$(VENV)/bin/allegro-ops --home $(DEMO_HOME) status acme daily-billing $(DEMO_DATE) --json | grep -q '"NOT_CREATED"' \
	  && $(VENV)/bin/allegro-ops --home $(DEMO_HOME) create acme daily-billing $(DEMO_DATE) >/dev/null || true
	@$(VENV)/bin/allegro-ops --home $(DEMO_HOME) status acme daily-billing $(DEMO_DATE) --json | grep -q '"process": true' \
	  && $(VENV)/bin/allegro-ops --home $(DEMO_HOME) process acme daily-billing $(DEMO_DATE) || \
	  $(VENV)/bin/allegro-ops --home $(DEMO_HOME) status acme daily-billing $(DEMO_DATE)

dashboard: install
	$(PY) -m widgets.serve --home $(DEMO_HOME) --port $(PORT)

test: install
	$(PY) -m pytest -q

# make bench: every benchmark at the issue's sizes (~25 min on 2 cores); make bench QUICK=1: small
# sizes (7 min measured). Figures in benchmarks/results/*.json, the scaling plot in results/scaling.html.
# Commands and options: benchmarks/README.md
bench: install
	cd benchmarks && ../$(PY) bench_engine.py $(if $(QUICK),--quick) \
	  && ../$(PY) bench_http.py $(if $(QUICK),--items 5000) \
	  && ../$(PY) bench_queries.py $(if $(QUICK),--items 1000000) \
	  && ../$(PY) bench_read_while_write.py $(if $(QUICK),--items 200000) \
	  && ../$(PY) bench_analyst.py $(if $(QUICK),--items 200000 --dates 2) \
	  && ../$(PY) bench_scaling.py $(if $(QUICK),--quick)

clean:
	rm -rf $(VENV) $(DEMO_HOME) .pytest_cache
