# GPAW build configuration used by scripts/setup.sh (GPAW_CONFIG): setup.py executes this file
# with its own globals (`libraries`, `fftw`, ...) in scope.
#
# FFTW: without it GPAW's plane-wave mode falls back to scipy's pocketfft, which took about half of
# an SCF's time in a profile of our paper-scale settings; linking FFTW made whole calculations
# 17-21% faster with products bitwise equal at the precision the cache stores.
fftw = True
libraries += ["fftw3"]  # noqa: F821 - defined by GPAW's setup.py
