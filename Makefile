# hdist: make help lists the targets.
PY ?= python
RESULTS ?= results
SCALE ?= small
STEMS ?= huo17-fig1
BENCH ?= bench-overhead bench-data-models
GALLERY ?= docs/gallery
COST_STEMS ?=

.PHONY: help install wheel test test-slow test-all test-mpi test-gpu gpu-check lint calibrate figures reproduce cost-table bench report gallery clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

install:  ## install hdist and its dev tools (CPU torch first: pip install torch==2.13.0)
	$(PY) -m pip install -e ".[dev]"

wheel:  ## build dist/hdist-*.whl (configs and experiments inside; tests/test_hydra_app.py installs and runs it)
	$(PY) -m pip wheel . --no-deps --no-build-isolation -w dist

test:  ## the default test suite (fast, no GPU, no network, no ../shared)
	$(PY) -m pytest -q

test-slow:  ## the slow tests only (the heavy stems at smoke scale, real-data loads when ../shared is there)
	$(PY) -m pytest -q -m "slow and not mpi and not gpu"

test-all:  ## every test, slow ones and those that read ../shared/data included (no GPU)
	$(PY) -m pytest -q -m "not gpu"

test-mpi:  ## the tests that launch mpiexec
	$(PY) -m pytest -q -m mpi

test-gpu:  ## the tests that need a CUDA device (skipped without one)
	$(PY) -m pytest -q -m gpu

gpu-check:  ## the GPU check on one GPU, < 8 min on an H100: numbers in one file, $OUT/gpu-check.json (docs/gpu.md); exit 2 without CUDA
	$(PY) -m hdist.gpu_check

lint:  ## ruff
	$(PY) -m ruff check hdist tests hydra_plugins

reproduce:  ## run the sweeps behind STEMS at SCALE (resumable): make reproduce STEMS="huo17-fig1" SCALE=smoke
	@for s in $(STEMS); do hdist reproduce $$s scale=$(SCALE) results_dir=$(RESULTS) || exit $$?; done

cost-table:  ## docs/reproduction.md's cost table: each stem's runs, time and memory at scale=paper, measured (COST_STEMS: only those rows; COST_LIMIT=S: timing runs' limit, default 60 s)
	$(PY) -m hdist.cost_table docs/reproduction.md $(COST_STEMS) $(if $(COST_LIMIT),--timing-limit=$(COST_LIMIT))

figures:  ## draw every figure and claim check from RESULTS (default results/)
	hdist figures results_dir=$(RESULTS)

CALIBRATE = model=mlp algo=asysg_con backend.threads_per_rank=1

calibrate:  ## measure this machine for the sim: conf/topology/laptop_{process,mpi}_w{1,2}.yaml (bench-sim-vs-real), lian15_*_calibrated.yaml
	@for b in process mpi; do for w in 1 2; do \
	  hdist calibrate laptop_$${b}_w$$w --local-links $(CALIBRATE) backend=$$b topology.workers=$$w || exit $$?; \
	done; done
	hdist calibrate lian15_cluster_calibrated topology=lian15_cluster topology.workers=1 experiment=lian15-table-con \
	  dataset.download=false backend=serial backend.threads=1
	hdist calibrate lian15_32core_calibrated topology=lian15_32core topology.workers=1 experiment=lian15-table-incon \
	  backend=serial backend.threads=1

report:  ## write RESULTS/REPORT.md
	hdist report results_dir=$(RESULTS)

gallery:  ## write GALLERY/README.md (default docs/gallery): every stem's figure and claims from RESULTS
	hdist gallery results_dir=$(RESULTS) out=$(GALLERY)

bench:  ## the benchmarks (experiments too): parquet, figure and claims under RESULTS
	@for s in $(BENCH); do hdist reproduce $$s scale=$(SCALE) results_dir=$(RESULTS) || exit $$?; done

clean:  ## remove results (runs, figures, report) and caches
	rm -rf $(RESULTS)/* .pytest_cache .ruff_cache build dist *.egg-info
	touch $(RESULTS)/.gitkeep
