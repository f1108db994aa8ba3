"""DOSnp: QSGW band gaps from LDA partial densities of states (Takao & Kotani).

``paper`` is the registry entry (stages, their inputs, outputs and params), ``config`` the typed
stage configs, ``pipeline`` the stage functions; ``model`` holds the network (Table III/IV of
the paper), ``data`` the featurized-dataset reader, ``baselines`` the linear and LRLIDG
baselines (Appendix C), ``train`` and ``cv`` the fitting and evaluation the stages call. The
materials and their structures come from :mod:`esrepro.selection`.
"""
