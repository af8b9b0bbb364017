# Two commands do all the set-up: `make demo` and `make test`.
# torch==2.13.0 is installed before the package so that pip takes the CPU wheel and never
# pulls several GB of CUDA packages to satisfy a looser requirement.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO := build

.PHONY: demo test install clean

install: $(VENV)/.installed

$(VENV)/.installed: setup.cfg setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[test,ray]'
	touch $@

# The toy suite is trained into its one home (~/.cache/inductscan/toy-suite, or $INDUCTSCAN_TOY_DIR),
# where `inductscan scan toy` and inductscan.scan("toy") find it afterwards.
demo: install
	$(BIN)/inductscan toy-suite --seeds 3
	$(BIN)/inductscan scan toy --out $(DEMO)/toy-results
	$(BIN)/inductscan query $(DEMO)/toy-results --best --seed 0 --step-range 1900:2300 --columns seed,step,tokens,layer,head,induction,in_context_gain
	$(BIN)/inductscan phases $(DEMO)/toy-results
	$(BIN)/inductscan plot $(DEMO)/toy-results -o $(DEMO)/toy-timing.png

# Two workers of one thread each (torch, OpenMP, BLAS): on 2 cores, two workers of two threads
# each keep four busy-waiting threads on two cores. Tests that are about thread counts set them.
test: install
	$(BIN)/ruff check inductscan tests scripts
	$(BIN)/ruff format --check inductscan tests scripts
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -n 2 --dist loadfile --no-loadscope-reorder

clean:
	rm -rf $(DEMO) results
