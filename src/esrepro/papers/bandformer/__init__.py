"""Bandformer (Gong et al.): crystal structure to electronic band structure along a k-path."""
