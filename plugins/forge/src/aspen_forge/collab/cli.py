"""``aspen forge issue …``, ``aspen forge patch …`` and ``aspen forge status set|list``
(``--json`` on every command: the RPC answer as is).

Issues and patches share most commands (``list``, ``show``, ``comment``, ``edit``,
``reopen``…): each is declared once, by a helper that adds it to either group.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import click

from aspen.cli import emit, emit_table, json_option, pass_cli
from aspen.cli.context import CliContext

__all__ = ["add_status_commands", "issue_cli", "patch_cli"]

#: A command's function, before click turns it into a command.
Handler = Callable[..., None]


def _call(cli: CliContext, method: str, params: dict[str, Any]) -> Any:
    return cli.client().call(method, params)


def _thread(item: dict[str, Any], kind: str) -> str:
    lines = [f"{kind} #{item['number']} [{item['state']}] {item['title']}  (by {item['author']})"]
    if item.get("body"):
        lines += ["", item["body"]]
    for comment in item.get("comments", ()):
        lines += ["", f"--- {comment['actor']}:", comment["body"]]
    return "\n".join(lines)


def _on_item(group: click.Group, name: str, help: str) -> Callable[[Handler], click.Command]:
    """Declare ``group``'s command ``name`` on one issue or patch: it takes the arguments
    REPO and NUMBER and ``--json`` (besides its own options) and is called as
    ``func(cli, repo, number, **options)``."""

    def decorate(func: Handler) -> click.Command:
        command = click.argument("repo")(
            click.argument("number", type=int)(json_option(pass_cli(func)))
        )
        return group.command(name, help=help)(command)

    return decorate


def _op(
    cli: CliContext, kind: str, name: str, repo: str, number: int, verb: str, **params: Any
) -> None:
    """Call ``forge.<kind>_<name>`` on issue/patch ``number`` and say what was done."""
    answer = _call(cli, f"forge.{kind}_{name}", {"repo": repo, "number": number, **params})
    emit(cli, answer, f"{verb} {kind} #{number} ({answer['state']})")


@dataclass(frozen=True)
class _Kind:
    """What the shared commands need to know of issues or patches."""

    name: str  # "issue" or "patch": the RPC methods are forge.<name>_<verb>
    plural: str  # the key of the list in a <name>_list answer
    states: tuple[str, ...]  # the choices of list --state
    headers: tuple[str, ...]  # the columns of list
    row: Callable[[dict[str, Any]], Sequence[Any]]  # one item's row in list
    show_help: str
    show_text: Callable[[dict[str, Any]], str]  # the text of a <name>_show answer


def _add_shared_commands(group: click.Group, kind: _Kind) -> None:
    """Add ``list``, ``show``, ``comment``, ``edit`` and ``reopen`` to ``group``."""
    name = kind.name

    @group.command("list", help=f"List the {kind.plural} of OWNER/NAME.")
    @click.argument("repo")
    @click.option("--state", type=click.Choice(kind.states), help="Only these.")
    @json_option
    @pass_cli
    def list_items(cli: CliContext, repo: str, state: str | None) -> None:
        answer = _call(cli, f"forge.{name}_list", {"repo": repo, "state": state})
        emit_table(cli, answer[kind.plural], kind.headers, kind.row)

    @_on_item(group, "show", kind.show_help)
    def show(cli: CliContext, repo: str, number: int) -> None:
        answer = _call(cli, f"forge.{name}_show", {"repo": repo, "number": number})
        emit(cli, answer, kind.show_text)

    @_on_item(group, "comment", f"Comment on {name} NUMBER.")
    @click.option("--body", required=True)
    def comment(cli: CliContext, repo: str, number: int, body: str) -> None:
        _op(cli, name, "comment", repo, number, "commented on", body=body)

    @_on_item(group, "edit", f"Change the title or body of {name} NUMBER.")
    @click.option("--title")
    @click.option("--body")
    def edit(cli: CliContext, repo: str, number: int, title: str | None, body: str | None) -> None:
        _op(cli, name, "edit", repo, number, "edited", title=title, body=body)

    _add_transition(group, name, "reopen", "reopened", f"Reopen closed {name} NUMBER.")


def _add_transition(group: click.Group, kind: str, name: str, verb: str, help: str) -> None:
    """Add ``name``: a change of state of one issue or patch that takes no options."""

    @_on_item(group, name, help)
    def transition(cli: CliContext, repo: str, number: int) -> None:
        _op(cli, kind, name, repo, number, verb)


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
    emit(cli, answer, f"opened issue #{answer['number']}")


_add_shared_commands(
    issue_cli,
    _Kind(
        "issue",
        "issues",
        ("open", "closed"),
        ("NUMBER", "STATE", "TITLE", "LABELS", "COMMENTS"),
        lambda i: (
            f"#{i['number']}",
            i["state"],
            i["title"],
            ",".join(i["labels"]),
            i["comment_count"],
        ),
        "Show issue NUMBER of OWNER/NAME with its comments.",
        lambda i: _thread(i, "issue"),
    ),
)


def _add_membership(name: str, verb: str, what: str) -> None:
    """Add ``issue <name> --add X --remove Y``: change the ``what`` of one issue."""

    @_on_item(issue_cli, name, f"Add or remove {what} of issue NUMBER.")
    @click.option("--add", multiple=True, help="Repeatable.")
    @click.option("--remove", multiple=True, help="Repeatable.")
    def change(
        cli: CliContext, repo: str, number: int, add: tuple[str, ...], remove: tuple[str, ...]
    ) -> None:
        _op(cli, "issue", name, repo, number, verb, add=list(add), remove=list(remove))


_add_membership("label", "labelled", "labels")
_add_membership("assign", "assigned", "assignees")


@_on_item(issue_cli, "close", "Close issue NUMBER.")
@click.option(
    "--reason",
    type=click.Choice(["completed", "not_planned", "duplicate"]),
    default="completed",
    show_default=True,
)
def issue_close(cli: CliContext, repo: str, number: int, reason: str) -> None:
    _op(cli, "issue", "close", repo, number, "closed", reason=reason)


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
    emit(cli, answer, f"opened patch #{answer['number']} ({source} -> {target})")


def _patch_text(answer: dict[str, Any]) -> str:
    """A patch's thread, its revisions with their reviews, and whether it can merge."""
    lines = [_thread(answer, "patch"), ""]
    for rev in answer["revisions"]:
        verdicts = ", ".join(f"{r['actor']}: {r['verdict']}" for r in rev["reviews"])
        lines.append(f"revision {rev['number']}: {rev['head'][:12]}  {verdicts}")
    merge = answer["merge"]
    if answer["state"] in ("draft", "open"):
        lines.append("mergeable" if not merge["blockers"] else "blocked:")
        lines += [f"  - {b}" for b in merge["blockers"]]
        lines += [f"  conflict: {p}" for p in merge.get("conflicts", ())]
    return "\n".join(lines)


_add_shared_commands(
    patch_cli,
    _Kind(
        "patch",
        "patches",
        ("draft", "open", "merged", "closed"),
        ("NUMBER", "STATE", "TITLE", "BRANCHES"),
        lambda p: (f"#{p['number']}", p["state"], p["title"], f"{p['source']} -> {p['target']}"),
        "Show patch NUMBER: revisions, reviews, whether it can merge.",
        _patch_text,
    ),
)
_add_transition(
    patch_cli, "patch", "ready", "marked ready", "Mark draft patch NUMBER ready for review."
)
_add_transition(
    patch_cli, "patch", "draft", "converted to draft", "Turn open patch NUMBER back into a draft."
)
_add_transition(patch_cli, "patch", "close", "closed", "Close patch NUMBER without merging.")


def _line_comments(specs: tuple[str, ...]) -> list[dict[str, Any]]:
    """``--line PATH:LINE:TEXT`` values as review comments."""
    comments = []
    for spec in specs:
        path, _, rest = spec.partition(":")
        line, _, text = rest.partition(":")
        if not line.isdigit():
            raise click.BadParameter(f"{spec!r} is not PATH:LINE:TEXT", param_hint="--line")
        comments.append({"path": path, "line": int(line), "body": text})
    return comments


@_on_item(patch_cli, "review", "Review patch NUMBER: --approve, --request-changes or --comment.")
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
def patch_review(
    cli: CliContext,
    repo: str,
    number: int,
    verdict: str,
    body: str,
    revision: int | None,
    lines: tuple[str, ...],
) -> None:
    params = {
        "repo": repo,
        "number": number,
        "verdict": verdict,
        "body": body,
        "revision": revision,
        "comments": _line_comments(lines),
    }
    answer = _call(cli, "forge.patch_review", params)
    emit(cli, answer, f"reviewed patch #{number}: {verdict}")


@_on_item(patch_cli, "merge", "Merge patch NUMBER into its target on the server.")
@click.option(
    "--strategy",
    type=click.Choice(["ff", "merge", "squash"]),
    default="merge",
    show_default=True,
)
def patch_merge(cli: CliContext, repo: str, number: int, strategy: str) -> None:
    answer = _call(cli, "forge.patch_merge", {"repo": repo, "number": number, "strategy": strategy})
    commit = (answer.get("merged") or {}).get("commit", "")
    emit(cli, answer, f"merged patch #{number} as {commit[:12]} ({strategy})")


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
        emit(cli, answer, f"{context}: {state} on {commit[:12]}")

    @status.command("list")
    @click.argument("repo")
    @click.argument("commit")
    @json_option
    @pass_cli
    def status_list(cli: CliContext, repo: str, commit: str) -> None:
        """The statuses of COMMIT of OWNER/NAME."""
        answer = _call(cli, "forge.status_list", {"repo": repo, "commit": commit})
        emit_table(
            cli,
            answer["statuses"],
            ("CONTEXT", "STATE", "DESCRIPTION"),
            lambda s: (s["context"], s["state"], s["description"]),
        )
