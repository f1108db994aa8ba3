"""esrepro."""
