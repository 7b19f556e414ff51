"""aspen-coord: fenced coordination primitives on an Aspen cluster.

Locks with fencing tokens, leader election, counters and sequences, semaphores,
read-write locks, barriers, token-bucket rate limiters and a service registry, served as
``coord.*`` RPC methods (the plugin's hooks live in :mod:`aspen_coord.plugin`). The Python
API is :class:`aspen_coord.client.Coord` (sync) and :class:`aspen_coord.client.AsyncCoord`.
"""

__version__ = "0.1.0"
