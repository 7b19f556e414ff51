"""aspen.testing."""
