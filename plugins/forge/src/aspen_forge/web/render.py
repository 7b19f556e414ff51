"""Turning repository content into safe HTML: Markdown (raw HTML escaped, unsafe links
refused) and highlighted code (Pygments), plus the Jinja2 environment of the pages.

Everything here is CPU work: callers run it in a worker thread.
"""

from __future__ import annotations

import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from markupsafe import Markup, escape

from aspen_forge import limits
from aspen_forge.web.cache import ByteLRU

__all__ = [
    "environment",
    "highlight",
    "highlight_blob",
    "markdown",
    "pygments_css",
    "readme_html",
]

_TEMPLATES = Path(__file__).parent / "templates"


@lru_cache(maxsize=1)
def _md() -> Any:
    from markdown_it import MarkdownIt

    # html=False: raw HTML in the source is shown as text, never passed through;
    # markdown-it refuses javascript:/vbscript:/data: (but images) link targets itself.
    md = MarkdownIt("commonmark", {"html": False, "linkify": False}).enable("table")
    md.add_render_rule("link_open", _link_open)
    md.add_render_rule("image", _image)
    return md


def _relative(url: object) -> bool:
    """Whether ``url`` is relative to the document (no scheme, host, ``/``, ``#`` or ``?``)."""
    if not isinstance(url, str) or not url or url.startswith(("/", "#", "?")):
        return False
    parts = urlsplit(url)
    return not parts.scheme and not parts.netloc


def _resolve(token: Any, attr: str, base: str) -> None:
    """Prefix ``token``'s ``attr`` with ``base`` if it is relative to the document."""
    if base and _relative(token.attrGet(attr)):
        token.attrSet(attr, base + token.attrGet(attr))


def _link_open(renderer: Any, tokens: Any, idx: int, options: Any, env: Any) -> str:
    """A link relative to the README goes to that file's page in the repository."""
    _resolve(tokens[idx], "href", env.get("blob", ""))
    return str(renderer.renderToken(tokens, idx, options, env))


def _image(renderer: Any, tokens: Any, idx: int, options: Any, env: Any) -> str:
    """An image relative to the README is loaded from the repository's raw view."""
    _resolve(tokens[idx], "src", env.get("raw", ""))
    return str(renderer.image(tokens, idx, options, env))


def markdown(text: str, blob: str = "", raw: str = "") -> Markup:
    """``text`` rendered as CommonMark (with tables); raw HTML is escaped. Relative links
    are resolved against ``blob``, relative images against ``raw`` (URL prefixes ending
    in ``/``), when given."""
    return Markup(_md().render(text, {"blob": blob, "raw": raw}))


def readme_html(name: str, text: str, blob: str = "", raw: str = "") -> Markup:
    """A README: Markdown if its name says so (see :func:`markdown`), else plain text."""
    if name.lower().endswith((".md", ".markdown")):
        return markdown(text, blob, raw)
    return Markup("<pre class='plain'>") + escape(text) + Markup("</pre>")


_HIGHLIGHTED = ByteLRU(limits.MAX_WEB_HIGHLIGHT_CACHE_BYTES)


def highlight_blob(path: str, sha: str, data: bytes) -> Markup:
    """:func:`highlight` of blob ``sha`` named ``path``, from the node's cache if there."""
    key = (sha, path)
    cached = _HIGHLIGHTED.get(key)
    if cached is None:
        cached = str(highlight(path, data.decode("utf-8", "replace")))
        _HIGHLIGHTED.put(key, cached)
    return Markup(cached)


def highlight(path: str, text: str) -> Markup:
    """``text`` highlighted for the file name ``path`` (plain text if no lexer fits), as
    a table of numbered lines (``.hl`` classes, styled by :func:`pygments_css`)."""
    from pygments import highlight as run
    from pygments.formatters import HtmlFormatter
    from pygments.lexers import TextLexer, get_lexer_for_filename
    from pygments.util import ClassNotFound

    try:
        lexer = get_lexer_for_filename(path, text, stripnl=False)
    except ClassNotFound:
        lexer = TextLexer(stripnl=False)
    formatter = HtmlFormatter(cssclass="hl", linenos="table", lineanchors="L", anchorlinenos=True)
    return Markup(run(text, lexer, formatter))


@lru_cache(maxsize=1)
def pygments_css() -> str:
    """The highlighting styles: a light palette, and a dark one when the browser prefers it."""
    from pygments.formatters import HtmlFormatter

    light = HtmlFormatter(style="friendly").get_style_defs(".hl")
    dark = HtmlFormatter(style="github-dark").get_style_defs(".hl")
    return f"{light}\n@media (prefers-color-scheme: dark) {{\n{dark}\n}}\n"


def _when(seconds: int) -> str:
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).strftime("%Y-%m-%d %H:%M")


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    if n < 1024 * 1024:
        return f"{n / 1024:.1f} KiB"
    return f"{n / (1024 * 1024):.1f} MiB"


def _person(author: str) -> str:
    """``Name <mail>`` → ``Name``."""
    return author.split(" <", 1)[0]


@lru_cache(maxsize=1)
def environment() -> Any:
    """The pages' Jinja2 environment (autoescaping everything)."""
    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    env = Environment(
        loader=FileSystemLoader(_TEMPLATES),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = _when
    env.filters["size"] = _size
    env.filters["person"] = _person
    env.filters["md"] = markdown  # issue and patch bodies, comments, reviews
    env.filters["short"] = lambda sha: sha[:10]
    env.filters["q"] = lambda path: quote(path, safe="/")
    return env
