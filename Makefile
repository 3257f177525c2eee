# The two commands of the README. Both create .venv when it is missing and install
# the project into it, so a fresh clone needs nothing but python3 and make.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test k8s-smoke lint image stubs security-docs load-gate bench-members bench-messages clean

run: $(STAMP)
	$(BIN)/ncbsim simulate

# Two workers, each taking whole test files (--dist loadfile: a module's network fixture is
# started once, by the worker that runs the module).
test: $(STAMP) lint
	$(BIN)/python -m pytest -n 2 --dist loadfile --durations=10 --ignore=tests/deploy_smoke

# The rendered Kubernetes manifests played in containers with podman (docs/deploy.md):
# needs podman and the image of `make image`, so it is not part of `make test`.
k8s-smoke: $(STAMP) image
	$(BIN)/python -m pytest tests/deploy_smoke -p no:cacheprovider --durations=0 -rP

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/buf lint

# The load harness's latency gate against load/slo.toml: exit 1 on a breach. A verdict that
# depends on the machine's speed, so it is a CI step of its own, not part of `make test`.
load-gate: $(STAMP)
	$(BIN)/ncbsim load --duration 20s --out load-reports/gate --junit load-reports/gate/junit.xml

# All 196 members with 10,000 records each: start-up, peak memory, latency, shutdown.
# Keeps its records in runs/all-members-work, so a second run skips generating them.
bench-members: $(STAMP)
	$(BIN)/ncbsim simulate all-members --workdir runs/all-members-work --report runs/all-members.json

# One-way messages: sealing for 196 recipients, notice publication at 5, 50 and 196
# bureaus, envelopes the gateway accepts a second. About 40 s on 2 cores.
bench-messages: $(STAMP)
	$(BIN)/python scripts/bench_messages.py

# The container image localhost/ncbsim:<version> (and :latest) from Debian packages and PyPI
# alone, plus build/image/ncbsim-<version>.oci.tar; rebuilt only when its inputs changed
# unless FORCE=1. Needs root, mmdebstrap and podman (scripts/build_image.py, docs/deploy.md).
image: $(STAMP)
	$(BIN)/python scripts/build_image.py $(if $(filter 1,$(FORCE)),--force)

stubs: $(STAMP)
	$(BIN)/python scripts/gen_protos.py

security-docs: $(STAMP)
	$(BIN)/python scripts/gen_security_tests.py

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
