"""The forge's web UI: server-rendered pages (Starlette + Jinja2) on the git HTTP port."""
