"""DOSnp: QSGW band gaps from LDA partial densities of states (Takao & Kotani).

``model`` holds the network (Table III/IV of the paper), ``data`` the featurized-dataset reader
and splits, ``baselines`` the linear and LRLIDG baselines (Appendix C), and ``train`` the
train / evaluate entry points called by the DVC stages.
"""
