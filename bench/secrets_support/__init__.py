"""Helpers of ``bench/secrets_vs_openbao.py``: the servers under test (Aspen and OpenBao), the
closed-loop load generator for the three secrets operations, and the report."""
