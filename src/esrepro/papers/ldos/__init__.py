"""LDOS: locally machine-learnable density of states (Aryanpour & Sadeghi).

The paper learns atom-projected DOS with SOAP + kernel ridge on sets of Si, C, SiC and Sn-S-Se
configurations. ``structures`` provides those configurations: the mirrored real silicon sets
(libAtoms silicon-testing-framework, HowWeiBin diamond cells) and seeded generators of the
paper's other kinds (strained/rattled diamond and beta-tin Si, liquid-like Si, carbon
allotropes, SiC polytypes, Sn(S,Se) solid solutions), each recording its provenance.
"""
