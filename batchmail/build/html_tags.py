"""The tags of an HTML body that content checks look at: images without `alt`, and `href` and
`src` values that cannot work in a mailbox. Read with the standard library's html.parser."""

from __future__ import annotations

import functools
from html.parser import HTMLParser
from urllib.parse import urlsplit

from batchmail.build.content_checks import WarningCode

_LISTED = 3  # examples named in one warning


# html.parser takes about 10 microseconds a tag, more than building the message: a body that
# is the same for many recipients (nothing personal in it) is read once.
@functools.lru_cache(maxsize=8)
def scan_tags(html: str) -> tuple[tuple[WarningCode, str], ...]:
    """The findings about the tags of `html`, one line per kind."""
    scan = _TagScan()
    scan.feed(html)
    scan.close()
    return tuple(scan.findings())


class _TagScan(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.no_alt: list[str] = []
        self.relative: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("href", "src") and relative(value or ""):
                self.relative.append(f"{name}={_quoted(value)}")
        if tag == "img" and not any(name == "alt" for name, _ in attrs):
            src = next((value for name, value in attrs if name == "src"), None)
            self.no_alt.append(f"<img src={_quoted(src)}>" if src is not None else "<img>")

    def findings(self) -> list[tuple[WarningCode, str]]:
        found: list[tuple[WarningCode, str]] = []
        if self.no_alt:
            found.append(("img-without-alt", f"{_examples(self.no_alt)} without alt text"))
        if self.relative:
            found.append(
                (
                    "relative-url",
                    f"relative {_examples(self.relative)}: a mailbox has no page to resolve it "
                    "against (use an absolute https URL, or cid: for an attached image)",
                )
            )
        return found


def relative(url: str) -> bool:
    """Whether a link or image address depends on a base a mailbox does not have: it has no
    scheme (a Windows drive letter is none), `//host/...` included. A `#fragment` stays within
    the message; any scheme (https, mailto, tel, cid...) stands on its own."""
    url = url.strip()
    if url.startswith("#"):
        return False
    try:
        scheme = urlsplit(url).scheme
    except ValueError:  # an unbalanced [ in the host: no address that can work either
        return True
    return len(scheme) < 2


def _quoted(value: str | None) -> str:
    """An attribute's value, shortened, on one line."""
    shown = " ".join((value or "").split())
    return '"' + (shown if len(shown) <= 80 else shown[:77] + "...") + '"'


def _examples(items: list[str]) -> str:
    shown = ", ".join(items[:_LISTED])
    more = len(items) - _LISTED
    return shown + (f" and {more} more" if more > 0 else "")
