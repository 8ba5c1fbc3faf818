# Two commands for a fresh machine:  make run   and   make test
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PORT   ?= 8501
ADDRESS ?= localhost

.PHONY: run test bench venv dev browser clean

$(VENV)/.runtime: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	@echo "Installing the pinned requirements (about 6.5 GB, about 4 minutes the first time)..."
	$(PY) -m pip install --progress-bar on -r requirements.txt
	touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements-dev.txt
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

venv: $(VENV)/.runtime
dev: $(VENV)/.dev

browser:
	bash scripts/ensure_chromium.sh

# The one folder the dashboard reads image folders from (TL_DATA_ROOT; default $TL_HOME/data):
# make run DATA_ROOT=/path/to/images
# A shared server: make run ADDRESS=0.0.0.0 PASSWORD=... (TL_PASSWORD: who signs in with it may act;
# without it a server on a network address is read-only; see tl_ui/access.py).
run: venv
	$(if $(DATA_ROOT),TL_DATA_ROOT="$(DATA_ROOT)" ,)$(if $(PASSWORD),TL_PASSWORD="$(PASSWORD)" ,)$(VENV)/bin/streamlit run app.py --server.address $(ADDRESS) --server.port $(PORT)

test: dev browser
	$(PY) -m pytest

bench: dev
	$(PY) -m bench $(if $(FULL),--full,)

clean:
	rm -rf $(VENV) artifacts
