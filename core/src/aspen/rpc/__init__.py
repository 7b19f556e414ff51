"""aspen.rpc."""
