"""The no-op job RQ's workers run in bench/jobs.py (importable by ``rq worker``)."""


def noop() -> None:
    """Do nothing."""
