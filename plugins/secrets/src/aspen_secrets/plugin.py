"""The ``secrets`` plugin's hooks (wired up as the engines land)."""
