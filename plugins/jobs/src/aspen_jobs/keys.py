"""Where the jobs plugin keeps its state, all under ``/_aspen/jobs/``.

* ``job/<id>``: the job's record (msgpack map, see :mod:`aspen_jobs.model`);
* ``ready/<queue>/<99-priority>/<id>``: a job waiting to be leased (value: its not-before);
  keys sort by priority then id, and ids sort by submission time;
* ``wait/<id>``: a job waiting for its dependencies;
* ``running/<id>``: a leased job (value: the worker's lease, hex);
* ``run/<lease hex>/<id>``: the same lease, attached to the worker's Aspen lease: it goes
  when the worker does, and its ``create_revision`` is the attempt's **fencing token**;
* ``idem/<queue>/<key>``: the job an idempotency key names;
* ``sched/<name>``: a schedule; ``audit/<time>/<id>/<attempt>``: one audit record per run.
"""

from __future__ import annotations

import re

from aspen.errors import InvalidArgumentError
from aspen_jobs import limits

ROOT = b"/_aspen/jobs/"
JOB = ROOT + b"job/"
READY = ROOT + b"ready/"
WAIT = ROOT + b"wait/"
RUNNING = ROOT + b"running/"
RUN = ROOT + b"run/"
IDEM = ROOT + b"idem/"
SCHED = ROOT + b"sched/"
AUDIT = ROOT + b"audit/"

#: Queue, schedule, job type and job id characters (also capability scopes and key parts).
NAME_PATTERN = re.compile(r"[A-Za-z0-9._@+=-]+")


def check_name(value: object, field: str, limit: int = limits.JOBS_MAX_NAME_BYTES) -> str:
    """``value`` if it is a valid name for ``field``, else ``invalid_argument``."""
    if not isinstance(value, str) or not value:
        raise InvalidArgumentError(f"{field!r} must be a non-empty string", field=field)
    if len(value.encode()) > limit:
        raise InvalidArgumentError(
            f"{field!r} is longer than {limit} bytes (JOBS_MAX_NAME_BYTES/JOBS_MAX_ID_BYTES)",
            field=field,
            limit=limit,
        )
    if not NAME_PATTERN.fullmatch(value):
        raise InvalidArgumentError(
            f"{field!r} {value!r} may hold only letters, digits and . _ - @ + =", field=field
        )
    return value


def job(job_id: str) -> bytes:
    """The record key of job ``job_id``."""
    return JOB + job_id.encode()


def ready(queue: str, priority: int, job_id: str) -> bytes:
    """The ready-index key of a job."""
    rank = limits.JOBS_MAX_PRIORITY - priority
    return READY + f"{queue}/{rank:02d}/{job_id}".encode()


def ready_prefix(queue: str) -> bytes:
    """The ready index of ``queue``."""
    return READY + queue.encode() + b"/"


def wait(job_id: str) -> bytes:
    """The dependency-wait key of a job."""
    return WAIT + job_id.encode()


def running(job_id: str) -> bytes:
    """The running-index key of a job."""
    return RUNNING + job_id.encode()


def run_prefix(lease: int) -> bytes:
    """The run keys of worker lease ``lease``."""
    return RUN + f"{lease:016x}/".encode()


def run(lease: int, job_id: str) -> bytes:
    """The run key of job ``job_id`` leased by worker lease ``lease``."""
    return run_prefix(lease) + job_id.encode()


def idem(queue: str, key: str) -> bytes:
    """The idempotency-key entry of ``key`` in ``queue``."""
    return IDEM + f"{queue}/{key}".encode()


def sched(name: str) -> bytes:
    """The record key of schedule ``name``."""
    return SCHED + name.encode()


def tail(key: bytes, prefix: bytes) -> str:
    """The part of ``key`` after ``prefix``, as text."""
    return key[len(prefix) :].decode()
