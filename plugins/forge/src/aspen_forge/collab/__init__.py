"""Issues, patches, reviews and commit statuses: event-sourced objects beside the git half."""
