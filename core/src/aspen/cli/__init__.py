"""aspen.cli."""
