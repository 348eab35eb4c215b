"""`template.text: auto`: the text part derived from the HTML part. The one module that uses
markdownify (MIT, on Beautiful Soup's html.parser): the text reads as Markdown does, headings
with `#`, lists with `*`, tables as rows of cells, links as `[text](url)` so their targets are
there."""

from __future__ import annotations

from typing import Any

from markdownify import MarkdownConverter

from batchmail.errors import invalid
from batchmail.load.job import display_path
from batchmail.load.settings import Job


class _TextConverter(MarkdownConverter):
    """Markdown's conventions, but for a person reading text rather than for a renderer: no
    escaping backslashes, plain line breaks, images as their alt text."""

    def convert_title(self, el: Any, text: str, parent_tags: set[str]) -> str:
        return ""  # the <head>'s title, not part of what the message shows

    def convert_br(self, el: Any, text: str, parent_tags: set[str]) -> str:
        return " " if "_inline" in parent_tags else "\n"

    def convert_img(self, el: Any, text: str, parent_tags: set[str]) -> str:
        alt = " ".join(str(el.attrs.get("alt") or "").split())
        return f"[{alt}]" if alt else ""  # a cid: or remote image's URL tells a reader nothing


_CONVERTER = _TextConverter(
    bullets="*",
    escape_asterisks=False,
    escape_underscores=False,
    escape_misc=False,
    heading_style="atx",
    bs4_options="html.parser",  # the standard library's parser, whatever else is installed
)


def html_to_text(html: str, job: Job, who: str) -> str:
    """The text of the HTML, ending with a line break; an error names the HTML template file
    and `who`, the recipient."""
    try:
        text = _CONVERTER.convert(html)
    except (ValueError, RecursionError) as exc:
        where = display_path(job.base_dir / job.html.name) if job.html else display_path(job.path)
        raise invalid(
            where, f"cannot derive the text part: {exc} ({who})", "template.text"
        ) from None
    return text.strip("\n") + "\n"
