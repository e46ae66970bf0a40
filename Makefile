# Two entry points that work on a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The CPU build of torch lies on local disk; install this pin before the package so that the
# package's own torch requirement is already satisfied (a bare `torch` would pull a CUDA build).
TORCH_PIN := torch==2.13.0

.PHONY: venv demo test test-slow bench clean

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH_PIN)
	$(BIN)/pip install -q -e ".[test,video,eval,serve,mcp,scale,annotate,onnx]"
	touch $@

venv: $(BIN)/.installed

demo: venv
	$(BIN)/conceptseg demo

# pytest exits 5 when it collects no tests: that is a failure, not a pass.
test: venv
	$(BIN)/python -m pytest -q --durations=10; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "no tests were collected" >&2; exit 1; fi; exit $$rc

test-slow: venv
	$(BIN)/python -m pytest -q -m slow

bench: venv
	$(BIN)/python bench/image.py

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache demo_out
