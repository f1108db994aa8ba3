# Two commands do everything on a fresh machine (see README):
#   make repro   set up, then `dvc repro` on the default params
#   make test    set up, then the test suite and the paper-target check
SHELL := /bin/bash
export PATH := $(CURDIR)/.venv/bin:$(PATH)
export OPENBLAS_NUM_THREADS := 1
export OMP_NUM_THREADS := 1

.PHONY: setup repro test check lint paper-scale

setup:
	@bash scripts/setup.sh

repro: setup
	dvc repro

test: setup
	python -m pytest
	esrepro check-targets

check: setup
	esrepro check-targets

lint: setup
	ruff check src stages scripts tests benchmarks

# All 1,516 materials for DOSnp and ALIGNN-DOS (one DFT cache serves both): hours of GPAW on
# 2 cores; resumable (a re-run continues from the DFT cache). Then snapshot each paper with
# `esrepro snapshot-reference <paper> --wall-time-s <s>`.
PAPER_SCALE = -S dosnp.n_materials=0 -S dosnp.max_sites=0 \
	-S dosnp.train.max_epochs=300 -S dosnp.train.patience=40 \
	-S alignn_dos.n_materials=0 -S alignn_dos.max_sites=0 \
	-S alignn_dos.train.max_epochs=150 -S alignn_dos.train.patience=20
paper-scale: setup
	dvc exp run $(PAPER_SCALE)
