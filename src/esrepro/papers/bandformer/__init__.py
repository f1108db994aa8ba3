"""Bandformer (Gong et al.): band structures along a continuous k-path from crystal graphs."""
