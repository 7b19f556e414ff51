"""aspen.node."""
