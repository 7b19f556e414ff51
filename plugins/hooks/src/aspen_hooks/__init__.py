"""aspen-hooks: durable event-driven automation on an Aspen cluster.

The plugin's hooks live in :mod:`aspen_hooks.plugin` (the ``aspen`` entry point).
"""

__version__ = "0.1.0"
