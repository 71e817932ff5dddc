# Two commands, each sets itself up on a fresh machine:
#   make demo   install, write example scans, ingest them, query across them
#   make test   install with the test extras, run the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
EXAMPLE := example

.PHONY: demo test install bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test,torch,reference,bench,report,lake,cloud]" "torch==2.13.0"
	touch $@

install: $(BIN)/.installed

demo: install
	rm -rf $(EXAMPLE)
	$(BIN)/scandb example $(EXAMPLE) --count 3
	$(BIN)/scandb ingest $(EXAMPLE)/*.zip --db $(EXAMPLE)/lab.duckdb
	$(BIN)/scandb sql --db $(EXAMPLE)/lab.duckdb \
	  "SELECT area, tier, count(DISTINCT scan_key) AS scans, round(avg(response), 4) AS mean_response \
	   FROM responses_long GROUP BY ALL ORDER BY ALL"

# -n 2: two test processes (the machine CI runs on has 2 cores), each test file in one of them
test: install
	$(BIN)/python -m pytest -q -p tests.no_skips -n 2 --dist loadfile

bench: install
	$(BIN)/pip install --quiet -e ".[bench]"
	$(BIN)/python -m bench.run --scans 7 --out bench/data

clean:
	rm -rf $(VENV) $(EXAMPLE) .pytest_cache
