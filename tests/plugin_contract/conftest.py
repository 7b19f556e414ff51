"""The plugin packages' own tests run inside the contract test's fresh venv, not here."""

collect_ignore = ["aspen-hello", "aspen-broken"]
