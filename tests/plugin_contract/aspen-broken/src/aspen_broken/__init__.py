"""A plugin that cannot even be imported: Aspen must report it and carry on."""

raise ImportError("aspen-broken needs libbroken, which is not installed")
