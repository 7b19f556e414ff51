"""``aspen forge …``: repositories, branch protection, and (from :mod:`aspen_forge.collab.cli`)
issues, patches and commit statuses (``--json`` on every command)."""

from __future__ import annotations

from typing import Any

import click

from aspen.cli import emit, emit_table, json_option, pass_cli
from aspen.cli.context import CliContext
from aspen.cli.output import format_table

__all__ = ["forge_cli"]


@click.group("forge")
def forge_cli() -> None:
    """Git hosting: repositories served over smart HTTP by every node."""


@forge_cli.group("repo")
def repo_cli() -> None:
    """Create, list, show, rename, delete and fork repositories."""


def _call(cli: CliContext, method: str, params: dict[str, Any]) -> Any:
    return cli.client().call(method, params)


def _repo_line(repo: dict[str, Any], verb: str = "") -> str:
    visibility = "private" if repo["private"] else "public"
    return f"{verb}{repo['full_name']} ({visibility}, default branch {repo['default_branch']})"


def _show_repo(cli: CliContext, repo: dict[str, Any], verb: str = "") -> None:
    emit(cli, repo, _repo_line(repo, verb))


@repo_cli.command("create")
@click.argument("repo")
@click.option("--private", is_flag=True, help="Only token holders may read it.")
@click.option("--description", default="", help="A one-line description.")
@click.option("--default-branch", default="main", show_default=True)
@json_option
@pass_cli
def repo_create(
    cli: CliContext, repo: str, private: bool, description: str, default_branch: str
) -> None:
    """Create repository OWNER/NAME."""
    params = {
        "repo": repo,
        "private": private,
        "description": description,
        "default_branch": default_branch,
    }
    _show_repo(cli, _call(cli, "forge.repo_create", params), "created ")


@repo_cli.command("list")
@click.option("--owner", help="Only this owner's repositories.")
@json_option
@pass_cli
def repo_list(cli: CliContext, owner: str | None) -> None:
    """List the repositories you may read."""
    answer = _call(cli, "forge.repo_list", {"owner": owner} if owner else {})
    emit_table(
        cli,
        answer["repos"],
        ("REPOSITORY", "VISIBILITY", "DEFAULT", "DESCRIPTION"),
        lambda r: (
            r["full_name"],
            "private" if r["private"] else "public",
            r["default_branch"],
            r["description"],
        ),
    )
    if answer["truncated"] and not cli.json:
        click.echo("(more repositories exist: narrow with --owner)", err=True)


@repo_cli.command("show")
@click.argument("repo")
@json_option
@pass_cli
def repo_show(cli: CliContext, repo: str) -> None:
    """Show repository OWNER/NAME and its refs."""
    emit(cli, _call(cli, "forge.repo_show", {"repo": repo}), _repo_lines)


def _repo_lines(answer: dict[str, Any]) -> list[str]:
    """A repository: its line, description, clone URL, origin, then one line per ref."""
    lines = [_repo_line(answer)]
    if answer["description"]:
        lines.append(answer["description"])
    if answer["clone_url"]:
        lines.append(f"clone: git clone {answer['clone_url']}")
    if answer["forked_from"]:
        lines.append(f"forked from {answer['forked_from']}")
    return lines + [f"{sha} {ref}" for ref, sha in answer["refs"].items()]


@repo_cli.command("edit")
@click.argument("repo")
@click.option("--description")
@click.option("--default-branch")
@click.option("--private/--public", default=None)
@json_option
@pass_cli
def repo_edit(
    cli: CliContext,
    repo: str,
    description: str | None,
    default_branch: str | None,
    private: bool | None,
) -> None:
    """Change a repository's description, default branch or visibility."""
    params = {
        "repo": repo,
        "description": description,
        "default_branch": default_branch,
        "private": private,
    }
    _show_repo(cli, _call(cli, "forge.repo_update", params), "updated ")


@repo_cli.command("rename")
@click.argument("repo")
@click.argument("new_name")
@json_option
@pass_cli
def repo_rename(cli: CliContext, repo: str, new_name: str) -> None:
    """Rename OWNER/NAME to NEW_OWNER/NEW_NAME."""
    _show_repo(
        cli, _call(cli, "forge.repo_rename", {"repo": repo, "new_name": new_name}), "renamed to "
    )


@repo_cli.command("delete")
@click.argument("repo")
@json_option
@pass_cli
def repo_delete(cli: CliContext, repo: str) -> None:
    """Delete repository OWNER/NAME (its refs and protection rules)."""
    emit(cli, _call(cli, "forge.repo_delete", {"repo": repo}), lambda a: f"deleted {a['deleted']}")


@repo_cli.command("fork")
@click.argument("repo")
@click.argument("new_name")
@click.option("--private/--public", default=None, help="Default: as the origin.")
@json_option
@pass_cli
def repo_fork(cli: CliContext, repo: str, new_name: str, private: bool | None) -> None:
    """Fork OWNER/NAME as NEW_OWNER/NEW_NAME (objects shared, refs copied)."""
    params = {"repo": repo, "new_name": new_name, "private": private}
    _show_repo(cli, _call(cli, "forge.repo_fork", params), "forked as ")


def _rules_table(answer: dict[str, Any]) -> str:
    rows = [
        (
            r["pattern"],
            "no" if r["no_force_push"] else "yes",
            "no" if r["no_delete"] else "yes",
            ",".join(r["push_allow"]) or "anyone with push",
        )
        for r in answer["rules"]
    ]
    return format_table(("PATTERN", "FORCE PUSH", "DELETE", "PUSH ALLOWED"), rows)


def _show_rules(cli: CliContext, answer: dict[str, Any]) -> None:
    emit(cli, answer, _rules_table)


@forge_cli.command("protect")
@click.argument("repo")
@click.argument("pattern")
@click.option("--no-force-push/--allow-force-push", default=True, show_default=True)
@click.option("--no-delete", is_flag=True, help="Refuse deleting matching branches.")
@click.option(
    "--push-allow", multiple=True, help="Token id (or 'root') allowed to push; repeatable."
)
@click.option("--required-approvals", type=int, default=0, help="Approvals a patch needs to merge.")
@click.option(
    "--required-status", multiple=True, help="Status context that must be success (repeatable)."
)
@click.option("--dismiss-stale", is_flag=True, help="Only approvals of the latest revision count.")
@json_option
@pass_cli
def protect(
    cli: CliContext,
    repo: str,
    pattern: str,
    no_force_push: bool,
    no_delete: bool,
    push_allow: tuple[str, ...],
    required_approvals: int,
    required_status: tuple[str, ...],
    dismiss_stale: bool,
) -> None:
    """Protect the branches of OWNER/NAME matching PATTERN (glob: main, release/*)."""
    params = {
        "repo": repo,
        "pattern": pattern,
        "no_force_push": no_force_push,
        "no_delete": no_delete,
        "push_allow": list(push_allow),
        "required_approvals": required_approvals,
        "required_status": list(required_status),
        "dismiss_stale": dismiss_stale,
    }
    _show_rules(cli, _call(cli, "forge.protect", params))


@forge_cli.command("unprotect")
@click.argument("repo")
@click.argument("pattern")
@json_option
@pass_cli
def unprotect(cli: CliContext, repo: str, pattern: str) -> None:
    """Drop the protection rule of OWNER/NAME for PATTERN."""
    _show_rules(cli, _call(cli, "forge.unprotect", {"repo": repo, "pattern": pattern}))


@forge_cli.command("protections")
@click.argument("repo")
@json_option
@pass_cli
def protections(cli: CliContext, repo: str) -> None:
    """List the protection rules of OWNER/NAME."""
    _show_rules(cli, _call(cli, "forge.protections", {"repo": repo}))


@forge_cli.group("status", invoke_without_command=True)
@json_option
@pass_cli
@click.pass_context
def status(ctx: click.Context, cli: CliContext) -> None:
    """This node's git HTTP address; ``set`` and ``list``: commit statuses."""
    if ctx.invoked_subcommand is not None:
        return
    answer = _call(cli, "forge.status", {})
    emit(cli, answer, lambda a: a["url"] or f"git HTTP not served: {a['http_error']}")


def _collab_commands() -> None:
    from aspen_forge.collab.cli import add_status_commands, issue_cli, patch_cli

    forge_cli.add_command(issue_cli)
    forge_cli.add_command(patch_cli)
    add_status_commands(status)


_collab_commands()
