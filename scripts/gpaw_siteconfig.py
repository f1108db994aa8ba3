# GPAW build configuration used by scripts/setup.sh (GPAW_CONFIG): setup.py executes this file
# with its own globals (`libraries`, `fftw`, ...) in scope.
#
# FFTW: without it GPAW's plane-wave mode falls back to scipy's pocketfft, which took about half of
# an SCF's time in a profile of our paper-scale settings; linking FFTW made whole calculations
# 17-21% faster with products bitwise equal at the precision the cache stores.
fftw = True
libraries += ["fftw3"]  # noqa: F821 - defined by GPAW's setup.py
# BLAS: GPAW adds it only when no siteconfig exists, so this file must name it, or GPAW builds
# without C BLAS (`gpaw info`: "using scipy.linalg.blas") and falls back to slower paths. With
# OpenBLAS linked: plane-wave ground states 7-15% and MoS2's G0W0 10% less CPU, products equal
# (docs/dft-cache.md, "GPAW's build").
noblas = False
libraries += ["openblas"]  # noqa: F821
