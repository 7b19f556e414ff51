"""aspen.plugins."""
