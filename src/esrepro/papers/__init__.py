"""Paper-specific code: one sub-package per reproduced paper."""
