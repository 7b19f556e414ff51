"""aspen-forge: git hosting on an Aspen cluster."""
