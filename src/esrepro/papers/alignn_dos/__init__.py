"""ALIGNN-DOS: electron density of states from Atomistic Line Graph Neural Networks.

Kaundinya, Choudhary & Kalidindi (``../shared/papers/alignn_dos.md``). ``model`` holds the
ALIGNN network on torch_geometric (D-ALIGNN: 300-bin DOS output; AE-ALIGNN: autoencoder latent
output) and the five-feature atom featurization of the paper; the periodic crystal graphs and
line graphs it consumes come from the shared :mod:`esrepro.graphs`. ``paper`` is the registry
entry (stages, their inputs, outputs and params), ``config`` the typed stage configs,
``pipeline`` the stage functions, ``train`` the fitting and evaluation they call.
"""
