# The commands of the README:
#   make demo       set up .venv and run the self-contained demo (sidecar on its embedded default)
#   make test       set up .venv (and Prometheus when root), build the collector, run the whole test suite
#   make collector  build driftcar's OpenTelemetry Collector distribution, build/otelcol-driftcar
#   make bench      every benchmark (benchmarks/run.py), the peers in their own .venv-peers
VENV   ?= .venv
PYTHON ?= python3
PY      = $(VENV)/bin/python
STAMP   = $(VENV)/.driftcar-installed
# the demo installs only the `demo` extra; anything that runs tests installs `dev` (a superset)
DEMO_STAMP = $(VENV)/.driftcar-demo-installed

.PHONY: demo test test-long bench venv system-deps collector clean

# The drift peers the verdicts benchmark runs beside driftcar, in a venv of their own (their pins
# conflict with driftcar's: pandas < 3); exact versions so every run compares the same peers.
PEERS_VENV  = .venv-peers
PEERS_STAMP = $(PEERS_VENV)/.installed
PEERS_PINS  = evidently==0.7.23 nannyml==0.13.1 pandas==2.3.3

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@ $(DEMO_STAMP)

$(DEMO_STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[demo]'
	touch $@

venv: $(STAMP)

# Prometheus (promtool + server) for the scrape and alert-rule tests, Chromium for the page
# and report tests; needs root.
system-deps:
	@if ! command -v promtool >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null) \
	      || echo "warning: could not install prometheus; its tests will be skipped"; \
	  else echo "note: prometheus not installed and not root; its tests will be skipped"; fi; \
	fi
	@if ! command -v chromium >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null) \
	      || echo "warning: could not install chromium; the browser tests will be skipped"; \
	  else echo "note: chromium not installed and not root; the browser tests will be skipped"; fi; \
	fi

# driftcar's collector distribution (collector-config/builder.yaml), built from the Collector's Go
# modules. build.sh keeps a stamp (hash of the manifest, the module lock, itself and the Go version)
# and returns at once while it matches, so this target always runs it.
collector:
	@if command -v go >/dev/null 2>&1; then collector-config/build.sh; \
	else echo "note: Go is not installed; the tests that run the collector will be skipped"; fi

demo: $(DEMO_STAMP)
	$(VENV)/bin/driftcar demo

test: $(STAMP) system-deps collector
	$(PY) -m pytest

test-long: $(STAMP) system-deps
	DRIFTCAR_LONG=1 $(PY) -m pytest tests/reliability

$(PEERS_STAMP):
	test -x $(PEERS_VENV)/bin/python || $(PYTHON) -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/python -m pip install -q $(PEERS_PINS)
	touch $@

bench: $(STAMP) $(PEERS_STAMP)
	PEERS_PYTHON=$(PEERS_VENV)/bin/python $(PY) benchmarks/run.py

clean:
	rm -rf $(VENV) $(PEERS_VENV) build *.egg-info agent/*.egg-info
