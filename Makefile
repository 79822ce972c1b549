# One-command entry points. Each sets up .venv from requirements.txt first (once; again when it changes).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cksum requirements.txt | cut -d' ' -f1)

.PHONY: setup demo test bench bench-scale gpu-check clean

setup: $(STAMP)

$(STAMP): requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	rm -f $(VENV)/.installed-* && touch $@

# The main job: FEN+GRX against GRX at the first 50 bands, on HAD100 if present, else the synthetic set; with
# the released had100 weights where they are found or fetched, else the shipped abu10 FEN (demo.py says so).
demo: setup
	$(PY) demo.py

test: setup
	$(PY) -m pytest -q tests

# Speed figures of the README (minutes on a 2-core CPU; bench_train alone takes a few).
bench: setup
	$(PY) benchmarks/speed/bench_grx.py
	$(PY) benchmarks/speed/bench_fen.py
	$(PY) benchmarks/speed/bench_slrx.py
	$(PY) benchmarks/speed/bench_lrx.py
	$(PY) benchmarks/speed/bench_crd.py
	$(PY) benchmarks/speed/bench_train.py --warmup 1 --steps 2

# Cost against scene size, 256^2 to 2048^2 x 200 bands (about an hour here; writes docs/scale.png).
bench-scale: setup
	$(PY) benchmarks/speed/bench_scale.py

# Everything only a GPU shows, checked and timed (at most 7 minutes, --budget 420; stops at once without CUDA):
# CUDA tests, reference AUCs on CUDA, training fp32/bf16/deterministic/DDP, 2048^2 x 200 scenes,
# results/gpu_check.json; the last line counts passed, failed and skipped checks.
# The first of $(PY) and $(PYTHON) that imports torch runs it, without pip (a GPU machine offline has its torch);
# only where neither does is .venv set up from requirements.txt first.
SETUP = $(MAKE) --no-print-directory setup  # not $(MAKE) in the recipe itself: `make -n gpu-check` would run it
gpu-check:
	@py=$$(for p in $(PY) $(PYTHON); do if $$p -c "import torch" >/dev/null 2>&1; then echo $$p; break; fi; done); \
	if [ -z "$$py" ]; then $(SETUP) && py=$(PY); fi; \
	echo "$$py benchmarks/checks/gpu_check.py"; $$py benchmarks/checks/gpu_check.py

clean:
	rm -rf results data/synthetic .pytest_cache
