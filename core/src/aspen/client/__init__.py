"""aspen.client."""
