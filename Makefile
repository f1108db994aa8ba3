# Two commands do everything on a fresh machine (see README):
#   make repro   set up, then `dvc repro` on the default params
#   make test    set up, then the test suite and the paper-target gate (fails on any gated
#                regression of a committed run, or a stale README claims table)
SHELL := /bin/bash
export PATH := $(CURDIR)/.venv/bin:$(PATH)
export OPENBLAS_NUM_THREADS := 1
export OMP_NUM_THREADS := 1

.PHONY: setup repro test check lint lock paper-scale ldos-paper-scale bandformer-paper-scale \
	vae-gw-machine-scale

setup:
	@bash scripts/setup.sh

repro: setup
	dvc repro

test: setup
	ruff check src stages scripts tests benchmarks
	python -m pytest
	esrepro check-targets
	esrepro claims --check

check: setup
	esrepro check-targets
	esrepro claims --check

lint: setup
	ruff check src stages scripts tests benchmarks

# Recompile requirements.lock from pyproject.toml's ranges, keeping every pin the lock already
# has (README: "Updating the lock"); UV_ARGS passes e.g. --upgrade-package dvc.
lock:
	uv pip compile pyproject.toml --extra dev --extra cluster --generate-hashes \
		--python-version 3.11.7 $(foreach d,$(PIP_FIND_LINKS),--find-links $(d)) \
		$(UV_ARGS) -o requirements.lock

# All 1,516 materials for DOSnp and ALIGNN-DOS: hours of GPAW, resumable; training on every
# core (TRAIN_THREADS). Choices and timings: docs/notes/paper-scale.md.
PAPER_SCALE = -S dosnp.n_materials=0 -S dosnp.max_sites=0 -S dft.farm.timeout_s=3600 \
	-S alignn_dos.n_materials=0 -S alignn_dos.max_sites=0 \
	-S alignn_dos.train.max_epochs=150 -S alignn_dos.train.patience=20
TRAIN_THREADS ?= $(shell nproc)
paper-scale: setup
	OMP_NUM_THREADS=$(TRAIN_THREADS) dvc exp run $(PAPER_SCALE)

# LDOS on every mirrored real-Si configuration of <= 216 atoms plus 16-24 generated structures
# of each kind; what is left out and why: docs/notes/paper-scale.md.
LDOS_PAPER_SCALE = -S ldos.max_atoms=216 -S dft.farm.timeout_s=7200 \
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

# Bandformer on every table material of at most 4 sites (449): its band DFT is ~10 core-hours
# (README, "Bandformer"); products already in a seed are not computed again.
BANDFORMER_PAPER_SCALE = -S bandformer.n_materials=0 -S bandformer.max_sites=4 \
	-S dft.farm.timeout_s=3600
bandformer-paper-scale: setup
	OMP_NUM_THREADS=$(TRAIN_THREADS) dvc exp run bandformer_report $(BANDFORMER_PAPER_SCALE)

# VAE-GW on all 156 monolayers of the ASE-built 2D set: G0W0 is ~20 core-hours (README,
# "VAE-GW"; `scripts/warm_dft_cache.py --product gw` fills the cache ahead); resumable, and
# products already in a seed are not computed again. 15 of the 153 trainable materials stay out of
# VAE training, as the paper keeps 30 of 302.
VAE_GW_MACHINE_SCALE = -S vae_gw.n_materials=0 -S vae_gw.vae.split.holdout_materials=15 \
	-S dft.farm.timeout_s=7200
vae-gw-machine-scale: setup
	OMP_NUM_THREADS=$(TRAIN_THREADS) dvc exp run vae_gw_report $(VAE_GW_MACHINE_SCALE)
