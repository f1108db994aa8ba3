"""DFT engine shared by every paper: GPAW calculations, a content-addressed cache, Dask farming.

Paper code asks for *products* of a material (eigenvalues, gap, Fermi level, PAW-projected
weights); the engine computes them once per (structure, settings, code versions) and serves
them from the cache afterwards.
"""

from esrepro.dft.settings import DFTSettings

__all__ = ["DFTSettings"]
