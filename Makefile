# Two entry points: `make run` (example pipeline) and `make test` (test suite).
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CORES ?= 2
# pytest-xdist workers for make test (0: in one process). On 2 fp32-only cores two workers took 2,077 s
# against 2,020 s in one process (the heavy tests are CPU-bound), so the default is one process; set
# TEST_WORKERS=2 where cores are idle (the long modules start first, the small workflow run is shared)
TEST_WORKERS ?= 0

.PHONY: run test env browser lint clean

$(BIN)/genembed: pyproject.toml constraints.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[test]'
	touch $@

env: $(BIN)/genembed

run: env
	$(BIN)/snakemake --cores $(CORES) --printshellcmds

# Headless Chromium for tests/test_report_render.py: installed when missing, as root with apt-get; otherwise
# one line says why and those tests skip (make test goes on either way).
browser:
	@if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then :; \
	elif [ "$$(id -u 2>/dev/null)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		{ apt-get install -y chromium chromium-driver || { apt-get update && apt-get install -y chromium chromium-driver; }; } \
		|| echo "browser: apt-get could not install chromium and chromium-driver; report rendering tests will skip"; \
	else echo "browser: chromium/chromedriver missing and not root with apt-get; report rendering tests will skip"; fi

test: env browser
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

lint: env
	$(BIN)/snakemake --lint

clean:
	rm -rf results logs benchmarks/logs .snakemake
