"""Quoting a student's own text inside a reply, so that Zulip shows it as typed and renders nothing of it.

Replies are Zulip Markdown. Echoing ``[x](https://evil)``, ``![img](…)``, a code fence,
``@**all**``, ``:emoji:`` or ``**`` as typed would render a link, an image, a block, a
mention that notifies everyone, or break the rest of the reply. Every piece of that
syntax, autolinked URLs and domains included, needs an ASCII mark other than space,
``,``, ``!``, ``?``, ``'`` and ``-``: text without one is shown as it is; any other text
goes into an inline code span, which renders nothing inside it.
"""

from __future__ import annotations

import re

from app.lessons.commands import strip_format_characters

# ASCII punctuation and symbols that take part in Markdown, mentions, emoji or autolinks.
_MARKUP = re.compile(r"[\"#$%&()*+./:;<=>@\[\\\]^_`{|}~]")


def quote_inline(text: str, limit: int = 60) -> str:
    """The text on one line, shortened to ``limit`` characters (… marks a cut), safe inside a reply.

    Line breaks become spaces (a new line could start a block: a fence, a quote, a
    list); invisible format characters (a right-to-left override, say) are dropped so
    they cannot reorder the reply around the quote.
    """
    flat = re.sub(r"\s+", " ", strip_format_characters(text)).strip()
    if len(flat) > limit:
        flat = flat[: limit - 1] + "…"
    if not _MARKUP.search(flat):
        return flat
    longest = max((len(run) for run in re.findall(r"`+", flat)), default=0)
    fence = "`" * (longest + 1)
    # Python-Markdown (Zulip's renderer) strips the spaces just inside the span, so
    # padding lets the text begin or end with a backtick.
    return f"{fence} {flat} {fence}" if flat.startswith("`") or flat.endswith("`") else f"{fence}{flat}{fence}"
