"""Support modules of bench/scale.py (Aspen and etcd targets, shared helpers, report)."""
