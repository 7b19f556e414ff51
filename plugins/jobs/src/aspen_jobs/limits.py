"""Every resource bound of the jobs plugin, as a named constant.

Input over a bound gets ``invalid_argument`` (or ``resource_exhausted``) naming the bound.
"""

from __future__ import annotations

# --- Submissions -----------------------------------------------------------------------
#: Longest queue, schedule or job-type name, in bytes.
JOBS_MAX_NAME_BYTES = 128
#: Longest client-chosen job id or idempotency key, in bytes.
JOBS_MAX_ID_BYTES = 128
#: Largest job payload (msgpack-encoded), in bytes: it lives in the job's KV record.
JOBS_MAX_PAYLOAD_BYTES = 64 * 1024
#: Longest shell command, in bytes.
JOBS_MAX_COMMAND_BYTES = 8 * 1024
#: Priorities run from 0 (lowest) to this (highest); higher priority is leased first.
JOBS_MAX_PRIORITY = 99
#: Default and longest run time of one attempt, in seconds.
JOBS_DEFAULT_TIMEOUT_SECONDS = 3600.0
JOBS_MAX_TIMEOUT_SECONDS = 7 * 24 * 3600.0
#: Most retries of one job (attempts = retries + 1).
JOBS_MAX_RETRIES = 100
#: Longest backoff between attempts, in seconds (exponential backoff is capped here).
JOBS_MAX_BACKOFF_SECONDS = 3600.0
#: Default backoff base between attempts, in seconds.
JOBS_DEFAULT_BACKOFF_SECONDS = 1.0
#: Most dependencies (``--after``) of one job.
JOBS_MAX_DEPENDENCIES = 64
#: Furthest in the future a job's not-before may lie, in seconds.
JOBS_MAX_DELAY_SECONDS = 365 * 24 * 3600.0

# --- Results ---------------------------------------------------------------------------
#: Output (stdout, stderr, each) kept in the job's KV record; more goes to the blob store.
JOBS_MAX_INLINE_OUTPUT_BYTES = 16 * 1024
#: Largest output (each of stdout and stderr) a worker reports for one attempt.
JOBS_MAX_OUTPUT_BYTES = 1024 * 1024
#: Longest error message kept for an attempt, in characters.
JOBS_MAX_ERROR_CHARS = 2000
#: Largest progress report (msgpack-encoded), in bytes.
JOBS_MAX_PROGRESS_BYTES = 4096
#: Attempts kept in a job's record (the oldest are dropped beyond; counts stay exact).
JOBS_MAX_ATTEMPT_RECORDS = 32

# --- Workers ---------------------------------------------------------------------------
#: Worker lease TTL bounds and default, in seconds: a worker silent this long loses its
#: jobs (they are retried, and its late results are refused).
JOBS_MIN_WORKER_TTL_SECONDS = 2
JOBS_MAX_WORKER_TTL_SECONDS = 300
JOBS_DEFAULT_WORKER_TTL_SECONDS = 10
#: Most queues one worker serves, and most jobs one worker runs at once.
JOBS_MAX_WORKER_QUEUES = 64
JOBS_MAX_CONCURRENCY = 256
#: Longest a ``jobs.lease`` call waits for a job, in seconds.
JOBS_MAX_LEASE_WAIT_SECONDS = 60.0
#: Ready entries one lease call examines per queue.
JOBS_LEASE_SCAN = 32
#: Seconds between a busy worker's heartbeats (lease renewal, cancellation check).
JOBS_HEARTBEAT_SECONDS = 1.0

# --- Shell worker ----------------------------------------------------------------------
#: Seconds between SIGTERM and SIGKILL when a shell job is stopped.
JOBS_KILL_GRACE_SECONDS = 5.0
#: Default rlimits of a shell job: CPU seconds, address space bytes, open files.
JOBS_RLIMIT_CPU_SECONDS = 3600
JOBS_RLIMIT_AS_BYTES = 4 * 1024**3
JOBS_RLIMIT_NOFILE = 256

# --- Cluster upkeep --------------------------------------------------------------------
#: Seconds between the leader's upkeep passes (lost workers, dependencies, schedules).
JOBS_UPKEEP_SECONDS = 0.5
#: Records one upkeep pass reads from each index.
JOBS_UPKEEP_SCAN = 1000
#: Most schedules in the cluster.
JOBS_MAX_SCHEDULES = 1000
#: Shortest interval of an interval schedule, in seconds.
JOBS_MIN_INTERVAL_SECONDS = 1.0
#: Most jobs one list call answers.
JOBS_MAX_LIST = 1000
#: Audit records kept (the oldest are dropped by the upkeep beyond this).
JOBS_MAX_AUDIT_RECORDS = 10_000
#: The upkeep trims the audit records every this many passes.
JOBS_AUDIT_TRIM_PASSES = 120
