# Two entry points for a fresh machine: `make run` (the whole pipeline on the embedded default data set)
# and `make test`. Both create .venv and install what is missing first; a second call installs nothing.
# The other targets run the common commands with the installed tools (or `source .venv/bin/activate`).
PYTHON ?= python3.11
VENV ?= .venv
CORES ?= all
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
export PATH := $(abspath $(BIN)):$(PATH)
export DVC_NO_ANALYTICS := 1

.PHONY: install run test dry-run lint lock track report submission data-efficiency docs

install: $(INSTALLED)

$(INSTALLED): requirements.lock pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; set PYTHON=/path/to/python3.11"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

run: $(INSTALLED)
	snakemake --cores $(CORES)

test: $(INSTALLED)
	pytest $(PYTEST_ARGS)

dry-run: $(INSTALLED)
	snakemake -n

report: $(INSTALLED)
	snakemake --report report.html

submission: $(INSTALLED)
	snakemake --cores $(CORES) submission

data-efficiency: $(INSTALLED)
	snakemake --cores $(CORES) data_efficiency

# After a finished run: the results tables of README.md and docs/results.md, the claims figure, config/README.md.
docs: $(INSTALLED)
	python -m dsflexinet docs-results --results results --readme README.md --page docs/results.md --figure docs/claims.png
	python -m dsflexinet config-reference

lint: $(INSTALLED)
	snakemake --lint

lock: $(INSTALLED)
	$(BIN)/python -m pip freeze --all --exclude-editable | sed '1i # Complete, pinned dependency set (pip freeze of a working install on Python 3.11, x86_64).\n# Direct dependencies are declared in pyproject.toml; regenerate this file with `make lock`.' > requirements.lock

# Record the data set and every entry of results/ with DVC (data.dvc, results/<entry>.dvc), ready for
# `git add data.dvc results/*.dvc`, `git commit` and `dvc push` (.gitignore already keeps the outputs out of Git).
track:
	dvc add --quiet data $$(find results -mindepth 1 -maxdepth 1 ! -name README.md ! -name '*.dvc' ! -name .gitignore | sort)
