# Two commands do everything on a fresh machine (see README):
#   make repro   set up, then `dvc repro` on the default params
#   make test    set up, then the test suite and the paper-target check
SHELL := /bin/bash
export PATH := $(CURDIR)/.venv/bin:$(PATH)
export OPENBLAS_NUM_THREADS := 1
export OMP_NUM_THREADS := 1

.PHONY: setup repro test check lint paper-scale ldos-paper-scale

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
# 2 cores; resumable (a re-run continues from the DFT cache and from the last epoch of each
# fit). Then snapshot each paper with `esrepro snapshot-reference <paper> --wall-time-s <s>`.
# Training here uses TRAIN_THREADS torch threads (default: every core; DOSnp epochs 1.8x
# faster on 2 cores than with 1). GPAW workers always run single-threaded. The default profile
# keeps 1 thread, so its training is bitwise repeatable (DFT digits can differ across CPUs).
# The time-out is raised for the few largest cells (slowest so far: 2,635 s on one core).
PAPER_SCALE = -S dosnp.n_materials=0 -S dosnp.max_sites=0 -S dft.farm.timeout_s=3600 \
	-S alignn_dos.n_materials=0 -S alignn_dos.max_sites=0 \
	-S alignn_dos.train.max_epochs=150 -S alignn_dos.train.patience=20
TRAIN_THREADS ?= $(shell nproc)
paper-scale: setup
	OMP_NUM_THREADS=$(TRAIN_THREADS) dvc exp run $(PAPER_SCALE)

# LDOS at the scale this machine can provide: every mirrored real-Si configuration of <= 216 atoms
# (HowWeiBin 104 diamond cells, the bc8/st12/sh/hex-diamond phases, 155 unique RSS minima,
# 20 stacking faults (18 atoms), grain boundaries (48), di-interstitials (66), amorphous Si (216))
# and 16-24 seeded structures of each generated kind. Left out: the 194 frames of two RSS
# relaxation trajectories (consecutive frames are near-copies, so a random split would put a
# frame's neighbours in training and flatter the test error), and the (111) surface slabs
# (160-1468 atoms in 35 A vacuum cells). LCAO cost per cell, 1 core: 18 atoms ~50 s, 48 ~3 min,
# 66 ~1.5 min, 216 ~34 min and 9 GB. A few thousand environments fit the exact kernel; larger
# sets want Nystrom (-S ldos.learn.n_sparse=300).
# Then `esrepro snapshot-reference ldos --wall-time-s <s> --force` (--force: a reference exists).
LDOS_PAPER_SCALE = -S ldos.max_atoms=216 \
	-S ldos.mirrored_si.howweibin_diamond=0 -S ldos.mirrored_si.bulk_hex_diamond=0 \
	-S ldos.mirrored_si.bulk_sh=0 -S ldos.mirrored_si.bulk_bc8=0 \
	-S ++ldos.mirrored_si.bulk_st12=0 -S ++ldos.mirrored_si.rss_minima=0 \
	-S ++ldos.mirrored_si.stacking_fault=0 -S ++ldos.mirrored_si.grain_boundary=0 \
	-S ++ldos.mirrored_si.diinterstitial=0 -S ++ldos.mirrored_si.amorphous=0 \
	-S ldos.generated.si_diamond.n=16 -S ldos.generated.si_beta_tin.n=16 \
	-S ldos.generated.si_liquid.n=16 -S ldos.generated.carbon.n=24 \
	-S ldos.generated.sic.n=24 -S 'ldos.generated.sic.polytypes=[3C,2H,4H,6H]' \
	-S ldos.generated.snsse=24
ldos-paper-scale: setup
	dvc exp run ldos_report $(LDOS_PAPER_SCALE)
