"""LDOS: locally machine-learnable density of states (Aryanpour & Sadeghi).

The paper learns atom-projected DOS with SOAP + kernel ridge on sets of Si, C, SiC and Sn-S-Se
configurations. ``silicon_sets`` reads the mirrored real silicon sets (libAtoms
silicon-testing-framework, HowWeiBin diamond cells); ``generators`` makes the paper's other
kinds with seeded generators (strained/rattled diamond and beta-tin Si, liquid-like Si, carbon
allotropes, SiC polytypes, Sn(S,Se) solid solutions), each recording its provenance.
``descriptors`` and ``krr`` are SOAP and the kernel ridge models, ``learn`` fits and evaluates
a set; ``paper`` is the registry entry, ``config`` the typed stage configs and ``pipeline``
the stage functions.
"""
