"""Every resource bound of the hooks plugin, as a named constant.

The core's bounds live in :mod:`aspen.limits`; these are aspen-hooks' own. Input over a
bound gets an ``invalid_argument`` (or ``resource_exhausted``) error that names the bound.
"""

from __future__ import annotations

# --- Handlers and runner ---------------------------------------------------------------
#: Longest handler name.
HOOKS_MAX_NAME_CHARS = 128
#: Longest handler pattern (``kv.put:/app/config/*``).
HOOKS_MAX_PATTERN_CHARS = 512
#: Most handlers a cluster may hold.
HOOKS_MAX_HANDLERS = 1000
#: Longest handler timeout, in seconds (and the default).
HOOKS_MAX_TIMEOUT_SECONDS = 3600.0
HOOKS_DEFAULT_TIMEOUT_SECONDS = 30.0
#: Most retries of one event (and the default).
HOOKS_MAX_RETRIES = 20
HOOKS_DEFAULT_RETRIES = 3
#: First and longest backoff between retries, in seconds (doubling in between).
HOOKS_BACKOFF_BASE_SECONDS = 0.2
HOOKS_BACKOFF_MAX_SECONDS = 30.0
#: TTL of the runner's lease: how long a dead runner's node blocks a new runner.
HOOKS_RUNNER_LEASE_SECONDS = 3
#: How often every node checks whether it should run (leader, runner key free).
HOOKS_SUPERVISE_INTERVAL_SECONDS = 0.25
#: Longest time a runner keeps a handler's cursor and counters unsaved while it is busy.
HOOKS_STATE_FLUSH_SECONDS = 0.2
#: An idle handler's cursor is saved at most this often, and only once other writes moved
#: it by HOOKS_IDLE_SAVE_REVISIONS (so that idle handlers do not keep writing each other's
#: progress).
HOOKS_IDLE_FLUSH_SECONDS = 5.0
HOOKS_IDLE_SAVE_REVISIONS = 1000
#: Longest time a handler whose spec changed (disabled, reset, replaced, removed) may
#: finish the run in progress before the runner cancels it (it stops at once when idle).
HOOKS_STOP_GRACE_SECONDS = 5.0
#: Tries of one progress or dead-letter save through brief trouble (timeouts, elections).
HOOKS_SAVE_ATTEMPTS = 5
#: Largest handler outcome kept in a dead-letter entry, in bytes (larger outputs are cut).
HOOKS_MAX_DLQ_OUTCOME_BYTES = 128 * 1024
#: Threads for synchronous python handlers (apart from the node's own worker threads).
HOOKS_MAX_PYTHON_THREADS = 8
#: Handlers one ``hooks trigger`` runs at the same time.
HOOKS_MAX_TRIGGER_CONCURRENCY = 16
#: Value bytes of a kv event carried in a hook's payload (larger values: size only).
HOOKS_MAX_PAYLOAD_VALUE_BYTES = 64 * 1024
#: Most dead-letter entries kept per handler (the oldest go first).
HOOKS_MAX_DLQ_ENTRIES = 10_000
#: Most recent durations kept per handler for p50/p99.
HOOKS_DURATION_SAMPLES = 512
#: Largest payload ``hooks trigger`` accepts, in bytes (msgpack).
HOOKS_MAX_TRIGGER_PAYLOAD_BYTES = 256 * 1024

# --- Executors -------------------------------------------------------------------------
#: Bytes of stdout and of stderr kept from one shell handler run (each; the rest is counted).
HOOKS_MAX_OUTPUT_BYTES = 64 * 1024
#: Seconds between SIGTERM and SIGKILL to a shell handler's process group.
HOOKS_KILL_GRACE_SECONDS = 2.0
#: Seconds output is still read after a shell handler's processes are gone (a process that
#: left the group may hold the pipes open).
HOOKS_OUTPUT_DRAIN_SECONDS = 1.0
#: Longest shell handler command, in characters.
HOOKS_MAX_COMMAND_CHARS = 4096
#: Largest ``ASPEN_HOOK_EVENT`` (compact JSON), in bytes; a larger event is passed without
#: its ``value`` (an environment string must stay under the kernel's 128 KiB).
HOOKS_MAX_EVENT_ENV_BYTES = 96 * 1024
#: Longest python handler entry point (``package.module:function``), in characters.
HOOKS_MAX_ENTRYPOINT_CHARS = 256
#: Most Aspen clusters an event may cross through forward handlers (loop protection).
HOOKS_MAX_FORWARD_HOPS = 4
#: Most endpoints (``host:port,...``) of one forward target.
HOOKS_MAX_FORWARD_ENDPOINTS = 16
#: Longest forward target token, in characters.
HOOKS_MAX_FORWARD_TOKEN_CHARS = 1024
#: Longest event name a forward target renames events to, in characters.
HOOKS_MAX_EVENT_NAME_CHARS = 256
#: Seconds ``hooks add`` spends checking a target online (connect + call, or import).
HOOKS_CHECK_TIMEOUT_SECONDS = 3.0
#: Longest one-line error reason of a handler run, in characters.
HOOKS_MAX_ERROR_CHARS = 1000
