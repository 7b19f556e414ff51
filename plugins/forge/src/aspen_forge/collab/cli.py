"""``aspen forge issue …``, ``aspen forge patch …`` and ``aspen forge status set|list``
(``--json`` on every command: the RPC answer as is)."""

from __future__ import annotations

from typing import Any

import click

from aspen.cli import json_option, pass_cli
from aspen.cli.context import CliContext
from aspen.cli.output import echo_json, format_table

__all__ = ["add_status_commands", "issue_cli", "patch_cli"]


def _call(cli: CliContext, method: str, params: dict[str, Any]) -> Any:
    return cli.client().call(method, params)


def _out(cli: CliContext, answer: Any, text: str) -> None:
    echo_json(answer) if cli.json else click.echo(text)


def _thread(item: dict[str, Any], kind: str) -> str:
    lines = [f"{kind} #{item['number']} [{item['state']}] {item['title']}  (by {item['author']})"]
    if item.get("body"):
        lines += ["", item["body"]]
    for comment in item.get("comments", ()):
        lines += ["", f"--- {comment['actor']}:", comment["body"]]
    return "\n".join(lines)


# ---------------------------------------------------------------------- issues
@click.group("issue")
def issue_cli() -> None:
    """Issues of a repository: create, list, show, comment, edit, label, assign, close."""


@issue_cli.command("create")
@click.argument("repo")
@click.option("--title", required=True)
@click.option("--body", default="")
@click.option("--label", "labels", multiple=True, help="Repeatable.")
@json_option
@pass_cli
def issue_create(
    cli: CliContext, repo: str, title: str, body: str, labels: tuple[str, ...]
) -> None:
    """Open an issue in OWNER/NAME."""
    params = {"repo": repo, "title": title, "body": body, "labels": list(labels)}
    answer = _call(cli, "forge.issue_create", params)
    _out(cli, answer, f"opened issue #{answer['number']}")


@issue_cli.command("list")
@click.argument("repo")
@click.option("--state", type=click.Choice(["open", "closed"]), help="Only these.")
@json_option
@pass_cli
def issue_list(cli: CliContext, repo: str, state: str | None) -> None:
    """List the issues of OWNER/NAME."""
    answer = _call(cli, "forge.issue_list", {"repo": repo, "state": state})
    if cli.json:
        echo_json(answer["issues"])
        return
    rows = [
        (f"#{i['number']}", i["state"], i["title"], ",".join(i["labels"]), i["comment_count"])
        for i in answer["issues"]
    ]
    click.echo(format_table(("NUMBER", "STATE", "TITLE", "LABELS", "COMMENTS"), rows))


@issue_cli.command("show")
@click.argument("repo")
@click.argument("number", type=int)
@json_option
@pass_cli
def issue_show(cli: CliContext, repo: str, number: int) -> None:
    """Show issue NUMBER of OWNER/NAME with its comments."""
    answer = _call(cli, "forge.issue_show", {"repo": repo, "number": number})
    _out(cli, answer, _thread(answer, "issue"))


def _issue_op(
    cli: CliContext, method: str, repo: str, number: int, verb: str, **params: Any
) -> None:
    answer = _call(cli, method, {"repo": repo, "number": number, **params})
    _out(cli, answer, f"{verb} issue #{number} ({answer['state']})")


@issue_cli.command("comment")
@click.argument("repo")
@click.argument("number", type=int)
@click.option("--body", required=True)
@json_option
@pass_cli
def issue_comment(cli: CliContext, repo: str, number: int, body: str) -> None:
    """Comment on issue NUMBER."""
    _issue_op(cli, "forge.issue_comment", repo, number, "commented on", body=body)


@issue_cli.command("edit")
@click.argument("repo")
@click.argument("number", type=int)
@click.option("--title")
@click.option("--body")
@json_option
@pass_cli
def issue_edit(
    cli: CliContext, repo: str, number: int, title: str | None, body: str | None
) -> None:
    """Change the title or body of issue NUMBER."""
    _issue_op(cli, "forge.issue_edit", repo, number, "edited", title=title, body=body)


@issue_cli.command("label")
@click.argument("repo")
@click.argument("number", type=int)
@click.option("--add", multiple=True, help="Repeatable.")
@click.option("--remove", multiple=True, help="Repeatable.")
@json_option
@pass_cli
def issue_label(
    cli: CliContext, repo: str, number: int, add: tuple[str, ...], remove: tuple[str, ...]
) -> None:
    """Add or remove labels of issue NUMBER."""
    _issue_op(
        cli, "forge.issue_label", repo, number, "labelled", add=list(add), remove=list(remove)
    )


@issue_cli.command("assign")
@click.argument("repo")
@click.argument("number", type=int)
@click.option("--add", multiple=True, help="Repeatable.")
@click.option("--remove", multiple=True, help="Repeatable.")
@json_option
@pass_cli
def issue_assign(
    cli: CliContext, repo: str, number: int, add: tuple[str, ...], remove: tuple[str, ...]
) -> None:
    """Add or remove assignees of issue NUMBER."""
    _issue_op(
        cli, "forge.issue_assign", repo, number, "assigned", add=list(add), remove=list(remove)
    )


@issue_cli.command("close")
@click.argument("repo")
@click.argument("number", type=int)
@click.option(
    "--reason",
    type=click.Choice(["completed", "not_planned", "duplicate"]),
    default="completed",
    show_default=True,
)
@json_option
@pass_cli
def issue_close(cli: CliContext, repo: str, number: int, reason: str) -> None:
    """Close issue NUMBER."""
    _issue_op(cli, "forge.issue_close", repo, number, "closed", reason=reason)


@issue_cli.command("reopen")
@click.argument("repo")
@click.argument("number", type=int)
@json_option
@pass_cli
def issue_reopen(cli: CliContext, repo: str, number: int) -> None:
    """Reopen issue NUMBER."""
    _issue_op(cli, "forge.issue_reopen", repo, number, "reopened")


# ---------------------------------------------------------------------- patches
@click.group("patch")
def patch_cli() -> None:
    """Patches (a source branch proposed into a target): create, review, merge."""


@patch_cli.command("create")
@click.argument("repo")
@click.option("--source", required=True, help="The branch with the changes.")
@click.option("--target", required=True, help="The branch to merge into.")
@click.option("--title", required=True)
@click.option("--body", default="")
@click.option("--draft", is_flag=True, help="Open as a draft (not mergeable until ready).")
@json_option
@pass_cli
def patch_create(
    cli: CliContext, repo: str, source: str, target: str, title: str, body: str, draft: bool
) -> None:
    """Propose branch SOURCE of OWNER/NAME into TARGET."""
    params = {
        "repo": repo,
        "source": source,
        "target": target,
        "title": title,
        "body": body,
        "draft": draft,
    }
    answer = _call(cli, "forge.patch_create", params)
    _out(cli, answer, f"opened patch #{answer['number']} ({source} -> {target})")


@patch_cli.command("list")
@click.argument("repo")
@click.option("--state", type=click.Choice(["draft", "open", "merged", "closed"]))
@json_option
@pass_cli
def patch_list(cli: CliContext, repo: str, state: str | None) -> None:
    """List the patches of OWNER/NAME."""
    answer = _call(cli, "forge.patch_list", {"repo": repo, "state": state})
    if cli.json:
        echo_json(answer["patches"])
        return
    rows = [
        (f"#{p['number']}", p["state"], p["title"], f"{p['source']} -> {p['target']}")
        for p in answer["patches"]
    ]
    click.echo(format_table(("NUMBER", "STATE", "TITLE", "BRANCHES"), rows))


@patch_cli.command("show")
@click.argument("repo")
@click.argument("number", type=int)
@json_option
@pass_cli
def patch_show(cli: CliContext, repo: str, number: int) -> None:
    """Show patch NUMBER: revisions, reviews, whether it can merge."""
    answer = _call(cli, "forge.patch_show", {"repo": repo, "number": number})
    if cli.json:
        echo_json(answer)
        return
    lines = [_thread(answer, "patch"), ""]
    for rev in answer["revisions"]:
        verdicts = ", ".join(f"{r['actor']}: {r['verdict']}" for r in rev["reviews"])
        lines.append(f"revision {rev['number']}: {rev['head'][:12]}  {verdicts}")
    merge = answer["merge"]
    if answer["state"] in ("draft", "open"):
        lines.append("mergeable" if not merge["blockers"] else "blocked:")
        lines += [f"  - {b}" for b in merge["blockers"]]
        lines += [f"  conflict: {p}" for p in merge.get("conflicts", ())]
    click.echo("\n".join(lines))


@patch_cli.command("review")
@click.argument("repo")
@click.argument("number", type=int)
@click.option("--approve", "verdict", flag_value="approve")
@click.option("--request-changes", "verdict", flag_value="request_changes")
@click.option("--comment", "verdict", flag_value="comment", default=True)
@click.option("--body", default="")
@click.option("--revision", type=int, help="Default: the latest.")
@click.option(
    "--line",
    "lines",
    multiple=True,
    help="A line comment PATH:LINE:TEXT (repeatable).",
)
@json_option
@pass_cli
def patch_review(
    cli: CliContext,
    repo: str,
    number: int,
    verdict: str,
    body: str,
    revision: int | None,
    lines: tuple[str, ...],
) -> None:
    """Review patch NUMBER: --approve, --request-changes or --comment."""
    comments = []
    for spec in lines:
        path, _, rest = spec.partition(":")
        line, _, text = rest.partition(":")
        if not line.isdigit():
            raise click.BadParameter(f"{spec!r} is not PATH:LINE:TEXT", param_hint="--line")
        comments.append({"path": path, "line": int(line), "body": text})
    params = {
        "repo": repo,
        "number": number,
        "verdict": verdict,
        "body": body,
        "revision": revision,
        "comments": comments,
    }
    answer = _call(cli, "forge.patch_review", params)
    _out(cli, answer, f"reviewed patch #{number}: {verdict}")


def _patch_op(cli: CliContext, method: str, repo: str, number: int, verb: str, **kw: Any) -> None:
    answer = _call(cli, method, {"repo": repo, "number": number, **kw})
    _out(cli, answer, f"{verb} patch #{number} ({answer['state']})")


@patch_cli.command("comment")
@click.argument("repo")
@click.argument("number", type=int)
@click.option("--body", required=True)
@json_option
@pass_cli
def patch_comment(cli: CliContext, repo: str, number: int, body: str) -> None:
    """Comment on patch NUMBER."""
    _patch_op(cli, "forge.patch_comment", repo, number, "commented on", body=body)


@patch_cli.command("edit")
@click.argument("repo")
@click.argument("number", type=int)
@click.option("--title")
@click.option("--body")
@json_option
@pass_cli
def patch_edit(
    cli: CliContext, repo: str, number: int, title: str | None, body: str | None
) -> None:
    """Change the title or body of patch NUMBER."""
    _patch_op(cli, "forge.patch_edit", repo, number, "edited", title=title, body=body)


def _transition(name: str, verb: str, doc: str) -> None:
    @patch_cli.command(name)
    @click.argument("repo")
    @click.argument("number", type=int)
    @json_option
    @pass_cli
    def command(cli: CliContext, repo: str, number: int) -> None:
        _patch_op(cli, f"forge.patch_{name}", repo, number, verb)

    command.__doc__ = doc


_transition("ready", "marked ready", "Mark draft patch NUMBER ready for review.")
_transition("draft", "converted to draft", "Turn open patch NUMBER back into a draft.")
_transition("close", "closed", "Close patch NUMBER without merging.")
_transition("reopen", "reopened", "Reopen closed patch NUMBER.")


@patch_cli.command("merge")
@click.argument("repo")
@click.argument("number", type=int)
@click.option(
    "--strategy",
    type=click.Choice(["ff", "merge", "squash"]),
    default="merge",
    show_default=True,
)
@json_option
@pass_cli
def patch_merge(cli: CliContext, repo: str, number: int, strategy: str) -> None:
    """Merge patch NUMBER into its target on the server."""
    answer = _call(cli, "forge.patch_merge", {"repo": repo, "number": number, "strategy": strategy})
    commit = (answer.get("merged") or {}).get("commit", "")
    _out(cli, answer, f"merged patch #{number} as {commit[:12]} ({strategy})")


# ---------------------------------------------------------------------- statuses
def add_status_commands(status: click.Group) -> None:
    """Add ``set`` and ``list`` to the ``aspen forge status`` group."""

    @status.command("set")
    @click.argument("repo")
    @click.argument("commit")
    @click.argument("context")
    @click.argument("state", type=click.Choice(["pending", "success", "failure", "error"]))
    @click.option("--description", default="")
    @click.option("--target-url", default="")
    @json_option
    @pass_cli
    def status_set(
        cli: CliContext,
        repo: str,
        commit: str,
        context: str,
        state: str,
        description: str,
        target_url: str,
    ) -> None:
        """Set the STATE of CONTEXT (ci/build) on COMMIT of OWNER/NAME."""
        params = {
            "repo": repo,
            "commit": commit,
            "context": context,
            "state": state,
            "description": description,
            "target_url": target_url,
        }
        answer = _call(cli, "forge.status_set", params)
        _out(cli, answer, f"{context}: {state} on {commit[:12]}")

    @status.command("list")
    @click.argument("repo")
    @click.argument("commit")
    @json_option
    @pass_cli
    def status_list(cli: CliContext, repo: str, commit: str) -> None:
        """The statuses of COMMIT of OWNER/NAME."""
        answer = _call(cli, "forge.status_list", {"repo": repo, "commit": commit})
        if cli.json:
            echo_json(answer["statuses"])
            return
        rows = [(s["context"], s["state"], s["description"]) for s in answer["statuses"]]
        click.echo(format_table(("CONTEXT", "STATE", "DESCRIPTION"), rows))
