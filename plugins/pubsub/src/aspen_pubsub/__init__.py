"""aspen-pubsub: durable partitioned topics and consumer groups on an Aspen cluster.

The plugin's hooks live in :mod:`aspen_pubsub.plugin` (the ``aspen`` entry point); the
client API (``c.pubsub``) in :mod:`aspen_pubsub.client`.
"""

__version__ = "0.1.0"
