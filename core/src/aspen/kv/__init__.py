"""aspen.kv."""
