# Two commands: `make run` and `make test`. Everything they need is installed by them.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)
SUDO   := $(shell [ "$$(id -u)" = "0" ] || echo sudo)
APT    := DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get

.PHONY: run test lint typecheck serve migrate seed system-fonts system-test-deps bench messages clean

$(STAMP):
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python >= 3.11 is required"'
	@test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@rm -f $(VENV)/.installed-*
	@touch $@

# Korean text in PDFs needs a CJK font; WeasyPrint needs Pango.
system-fonts:
	@fc-list 2>/dev/null | grep -qi "Noto Sans CJK" && ldconfig -p | grep -q libpango-1.0 || \
	  ($(APT) update -qq && $(APT) install -y -qq fonts-noto-cjk libpango-1.0-0 libpangoft2-1.0-0 fontconfig >/dev/null)

# Real-browser tests drive Debian's Chromium through Playwright (never `playwright install`).
system-test-deps: system-fonts
	@command -v chromium >/dev/null 2>&1 || ($(APT) update -qq && $(APT) install -y -qq chromium >/dev/null)

run: $(STAMP) system-fonts
	$(VENV)/bin/telemed migrate
	$(VENV)/bin/telemed seed-demo
	$(VENV)/bin/telemed serve

test: $(STAMP) system-test-deps
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy

bench: $(STAMP)
	@for b in benchmarks/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

# Re-extract translatable strings and merge them into the Korean catalog.
messages: $(STAMP)
	$(VENV)/bin/pybabel extract -F babel.cfg -o clinic/locale/messages.pot .
	$(VENV)/bin/pybabel update -i clinic/locale/messages.pot -d clinic/locale -D messages --no-fuzzy-matching

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
