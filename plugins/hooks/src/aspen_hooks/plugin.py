"""The ``hooks`` plugin's hooks (wired up as the parts land)."""
