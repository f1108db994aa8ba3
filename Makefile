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
# 2 cores; resumable (a re-run continues from the DFT cache). Then snapshot each paper with
# `esrepro snapshot-reference <paper> --wall-time-s <s>`.
PAPER_SCALE = -S dosnp.n_materials=0 -S dosnp.max_sites=0 \
	-S dosnp.train.max_epochs=300 -S dosnp.train.patience=40 \
	-S alignn_dos.n_materials=0 -S alignn_dos.max_sites=0 \
	-S alignn_dos.train.max_epochs=150 -S alignn_dos.train.patience=20
paper-scale: setup
	dvc exp run $(PAPER_SCALE)

# LDOS at the scale this machine can provide: every mirrored real-Si configuration of <= 16 atoms
# (HowWeiBin 104 diamond cells, the bc8/st12/sh/hex-diamond phases, 157 unique RSS minima) and 16-24
# seeded structures of each generated kind. Left out for compute: the 194 frames of two RSS
# relaxation trajectories (highly correlated; add `-S ++ldos.mirrored_si.rss_relaxation_trajectory=0`)
# and the larger cells (stacking faults 18, grain boundary 48, di-interstitial 66, amorphous 216,
# surfaces 160+ atoms; raise ldos.max_atoms). A few thousand environments fit the exact kernel;
# larger sets want Nystrom (-S ldos.learn.n_sparse=300).
# Then `esrepro snapshot-reference ldos --wall-time-s <s>`.
LDOS_PAPER_SCALE = -S ldos.max_atoms=16 \
	-S ldos.mirrored_si.howweibin_diamond=0 -S ldos.mirrored_si.bulk_hex_diamond=0 \
	-S ldos.mirrored_si.bulk_sh=0 -S ldos.mirrored_si.bulk_bc8=0 \
	-S ++ldos.mirrored_si.bulk_st12=0 -S ++ldos.mirrored_si.rss_minima=0 \
	-S ldos.generated.si_diamond.n=16 -S ldos.generated.si_beta_tin.n=16 \
	-S ldos.generated.si_liquid.n=16 -S ldos.generated.carbon.n=24 \
	-S ldos.generated.sic.n=24 -S 'ldos.generated.sic.polytypes=[3C,2H,4H,6H]' \
	-S ldos.generated.snsse=24
ldos-paper-scale: setup
	dvc exp run ldos_report $(LDOS_PAPER_SCALE)
