# The workbook's two commands: `make run` and `make test`. Both set everything up first.
VENV ?= .venv
PROFILE ?= default
NOTEBOOKS ?=
export VENV

.PHONY: setup run test lab benchmark report
setup:
	@bash scripts/setup.sh

run: setup  ## execute the notebooks with papermill into runs/$(PROFILE)/ and write the figures
	$(VENV)/bin/python -m fmnist_helpers.run --profile $(PROFILE) $(NOTEBOOKS)

test: setup  ## unit tests, notebook tests and nbval over every notebook, in quick mode
	$(VENV)/bin/python -m pytest tests notebooks --nbval --nbval-current-env -p no:cacheprovider -n 2 --dist loadscope

lab: setup
	$(VENV)/bin/jupyter lab notebooks/

report: setup  ## regenerate the README's results tables and summary figures from results/
	$(VENV)/bin/python -m fmnist_helpers.report

benchmark: setup
	$(VENV)/bin/python benchmarks/benchmark.py
