"""aspen.transport."""
