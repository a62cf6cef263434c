# Two commands do everything on a fresh machine:
#   make demo   set up, build the sample dataset from installed real images, clean it
#   make test   set up, run the tests
VENV        ?= .venv
PYTHON      ?= python3
PY          := $(VENV)/bin/python
INSTALLED   := $(VENV)/.installed
# Real images and data that the demo, tests and benchmarks read (never downloaded at run time).
DEBIAN_PACKAGES := opencv-doc openclipart-png dataset-fashion-mnist chromium fonts-dejavu-core
SAMPLE      := data/sample
SAMPLE_OUT  := out/sample

.PHONY: demo test test-all system-packages setup clean-demo

demo: setup $(SAMPLE).planted.json
	$(VENV)/bin/dedupkit clean $(SAMPLE) $(SAMPLE_OUT)

test: setup
	$(VENV)/bin/pytest -q

test-all: setup
	$(VENV)/bin/pytest -q -m ""

setup: system-packages $(INSTALLED)

$(INSTALLED): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

system-packages:
	@missing=""; for p in $(DEBIAN_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

# The planted-duplicates list lies beside the sample, not in it: every file in it is a record.
# A rebuilt sample is new input: the previous demo output no longer describes it.
$(SAMPLE).planted.json: $(INSTALLED)
	rm -rf $(SAMPLE) $(SAMPLE_OUT)
	$(PY) scripts/make_sample_data.py $(SAMPLE)

clean-demo:
	rm -rf $(SAMPLE) $(SAMPLE_OUT) $(SAMPLE).planted.json
