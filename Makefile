# The README's two commands: `make run` (the hotline with the bundled sample) and `make test`.
# Both install what they need first: Debian packages (apt-get, as root), a virtualenv, and on first
# use an Asterisk 22 chroot cached in /var/cache/hotline (asterisk/hotline-pbx provision).

VENV := .venv
BIN := $(VENV)/bin
PYTHON ?= python3
# gcc and python3-dev: mypyc compiles the call engine (ivr/native.py); without them it runs interpreted.
DEBIAN_PACKAGES := redis-server espeak-ng debootstrap chromium gcc python3-dev

.PHONY: run test setup system lint e2e unit bench clean

run: setup
	$(BIN)/hotline serve

# The unit tests a second time with the engine interpreted: what runs where it cannot be compiled.
test: setup
	$(BIN)/pytest -q
	HOTLINE_INTERPRETED=1 $(BIN)/pytest -q tests/unit

unit: setup
	$(BIN)/pytest -q tests/unit

e2e: setup
	$(BIN)/pytest -q tests/e2e

bench: setup
	$(BIN)/python -m bench.run

lint: setup
	$(BIN)/ruff check ivr routing tests bench
	$(BIN)/mypy

setup: system $(BIN)/.installed
	@$(BIN)/python -m ivr.native_build || echo "the compiled engine did not build: the call engine runs interpreted"
	@./asterisk/hotline-pbx provision

system:
	@missing=""; for p in $(DEBIAN_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

clean:
	rm -rf $(VENV) build .pytest_cache .mypy_cache .ruff_cache
