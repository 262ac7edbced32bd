# dockyard: `make demo` and `make test` set up everything on a fresh Debian 12 machine (as root).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Debian packages: the test base image (busybox-static), the peers the interop tests drive
# (docker.io, podman, skopeo, umoci, docker-registry, runc) and compression tools.
APT_PACKAGES := busybox-static docker.io podman skopeo umoci docker-registry runc \
	zstd xz-utils tar tmux btrfs-progs debootstrap hyperfine curl iproute2 procps wrk

.PHONY: all setup apt venv demo test lint typecheck unit bench clean

all: test

setup: apt venv

apt:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing:" $$missing; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

venv: $(BIN)/.installed

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q --config-settings editable_mode=compat -e '.[test]'
	@# pip's console-script wrapper imports re (~5 ms); a plain launcher keeps `images` instant
	printf '#!%s/python\nimport sys\nfrom dockyard.cli.fast import main\nsys.exit(main())\n' "$(abspath $(BIN))" > $(BIN)/dockyard
	touch $@

demo: setup
	bash scripts/demo.sh

lint: venv
	@# PYTHONDONTWRITEBYTECODE is set on these machines: compile once so the CLI starts fast
	$(BIN)/python -m compileall -q src >/dev/null
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy

test: setup lint
	DOCKYARD_REQUIRE_PEERS=1 $(BIN)/python -m pytest -n 2 -p no:cacheprovider tests

unit: venv
	$(BIN)/python -m pytest -q tests/unit

bench: setup
	$(BIN)/python bench/store.py

clean:
	rm -rf $(VENV) .work
