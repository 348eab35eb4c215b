"""Markdown bodies: the one module that uses markdown-it-py."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import cache
from urllib.parse import unquote

from markdown_it import MarkdownIt
from markdown_it.token import Token

# Given an image's path as written in the Markdown, the URL to show it by instead, or None.
ImageHook = Callable[[str], str | None]

_PAGE = (
    '<!DOCTYPE html>\n<html>\n<head>\n<meta charset="utf-8">\n</head>\n<body>\n{body}</body>\n'
    "</html>\n"
)


@cache
def _parser() -> MarkdownIt:
    # Raw HTML stays text: recipient data rendered into the Markdown must not become markup.
    return MarkdownIt("commonmark", {"html": False}).enable(["table", "strikethrough"])


def to_html(source: str, images: ImageHook | None = None) -> str:
    """The Markdown as an HTML document; `images` may replace the `src` of each image."""
    parser = _parser()
    tokens = parser.parse(source)
    if images is not None:
        for token in _images(tokens):
            src = str(token.attrGet("src") or "")
            # markdown-it percent-encodes the path it read; the hook gets it as written.
            replaced = images(unquote(src))
            if replaced is not None:
                token.attrSet("src", replaced)
    return _PAGE.format(body=parser.renderer.render(tokens, parser.options, {}))


def _images(tokens: Iterable[Token]) -> Iterable[Token]:
    for token in tokens:
        if token.type == "image":
            yield token
        if token.children:
            yield from _images(token.children)
