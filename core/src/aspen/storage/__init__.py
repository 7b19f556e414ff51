"""aspen.storage."""
