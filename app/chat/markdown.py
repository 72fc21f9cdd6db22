"""Quoting a student's own text inside a reply, so that Zulip shows it and renders nothing of it.

Replies are Zulip Markdown. Echoing ``[x](https://evil)``, ``![img](…)``, a code fence,
``@**all**`` or ``**`` as typed would render a link, an image, a block, a mention that
notifies everyone, or break the rest of the reply. An inline code span renders none of
that; it only needs a backtick run longer than any inside the text, and one line.
"""

from __future__ import annotations

import re

from app.lessons.commands import strip_format_characters


def quote_inline(text: str, limit: int = 60) -> str:
    """The text as one inline code span, shortened to ``limit`` characters (… marks a cut).

    Line breaks become spaces (a new line could start a block: a fence, a quote, a
    list); invisible format characters (a right-to-left override, say) are dropped so
    they cannot reorder the reply around the quote.
    """
    flat = re.sub(r"\s+", " ", strip_format_characters(text)).strip()
    if len(flat) > limit:
        flat = flat[: limit - 1] + "…"
    longest = max((len(run) for run in re.findall(r"`+", flat)), default=0)
    fence = "`" * (longest + 1)
    # Python-Markdown (Zulip's renderer) strips one layer of spaces inside the span, so
    # padding lets the text begin or end with a backtick.
    return f"{fence} {flat} {fence}" if flat.startswith("`") or flat.endswith("`") else f"{fence}{flat}{fence}"
