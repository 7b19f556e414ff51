"""Helpers of bench/jobs.py."""
