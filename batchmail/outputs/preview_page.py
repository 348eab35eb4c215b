"""The browsable dry-run preview: `index.html` beside the `.eml` files, one card per message.

The page is built for messages nobody has reviewed yet, so it trusts none of them:

- everything taken from a message is HTML-escaped, and an HTML body is shown only inside an
  `<iframe srcdoc>` with an empty `sandbox` attribute (no scripts, no forms, an opaque origin);
- the page itself carries no JavaScript and a Content-Security-Policy that allows none, nor any
  request beyond `data:` images; a srcdoc document inherits that policy, so an HTML body cannot
  load remote images, fonts or styles either (no tracking pixel fires while previewing);
- it works from `file://`, with no server and no network: all CSS is inline.

It is written as a stream: the cards go to a temporary file one message at a time, then the
summary (which needs the totals) and the cards are joined into the pages, each replacing any
earlier one atomically. Only the first `limit` messages (1,000) get a card; the rest are only
counted, and a note says how many. The cards are split into pages of `page_size` (100):
`index.html`, `index-2.html`, ... linked to each other, because every HTML body is a frame, a
whole document to the browser, and a thousand of them make a page slow to open and heavy.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from html import escape
from pathlib import Path
from typing import IO

from msgspec import Struct, field

from batchmail.build.content_checks import ContentWarning
from batchmail.errors import StateError
from batchmail.outputs.preview_card import card, size_html

MAX_MESSAGES = 1000  # messages previewed; the others are only counted
PAGE_SIZE = 100  # messages per page: each HTML body is a frame, a whole document to the browser
INDEX_NAME = "index.html"

# `frame-src 'none'` still lets srcdoc frames render (they load nothing), and stops a link
# clicked inside a body from navigating its frame anywhere. The srcdoc documents inherit it.
CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-src 'none'; "
    "base-uri 'none'; form-action 'none'"
)

_CHUNK = 1 << 20

_STYLE = """
:root { color-scheme: light; --ink: #1f2933; --muted: #66788a; --line: #dde3ea;
  --accent: #2f6fde; --bg: #f3f5f8; --card: #fff; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--ink);
  font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Liberation Sans", sans-serif; }
a { color: var(--accent); }
.summary { background: #17324d; color: #fff; padding: 22px 32px; }
.summary h1 { margin: 0 0 4px; font-size: 22px; font-weight: 600; overflow-wrap: anywhere; }
.summary .kind { font-weight: 400; opacity: .75; font-size: 15px; margin-left: 8px; }
.stats { display: flex; flex-wrap: wrap; gap: 10px 28px; margin: 14px 0 0; padding: 0; }
.stats div { display: flex; flex-direction: column; }
.stats dt { font-size: 12px; text-transform: uppercase; letter-spacing: .06em; opacity: .7; }
.stats dd { margin: 0; font-size: 20px; font-weight: 600; }
.stats a { color: #bcd4ff; }
.note { margin: 16px 32px 0; padding: 10px 14px; border-radius: 8px;
  background: #fff7e0; border: 1px solid #f0d58a; }
.pages { margin: 16px 32px 0; display: flex; flex-wrap: wrap; gap: 6px; align-items: center; }
.pages a { padding: 2px 10px; border: 1px solid var(--line); border-radius: 6px;
  background: var(--card); text-decoration: none; }
.pages a[aria-current] { background: var(--accent); border-color: var(--accent); color: #fff; }
main { padding: 16px 32px 40px; display: grid; gap: 18px; }
.msg { background: var(--card); border: 1px solid var(--line); border-radius: 10px;
  box-shadow: 0 1px 3px rgba(20, 40, 60, .08); overflow: hidden; }
.msg > header { padding: 14px 18px 12px; border-bottom: 1px solid var(--line); }
.msg h2 { margin: 0 0 8px; font-size: 17px; font-weight: 600; overflow-wrap: anywhere; }
.seq { display: inline-block; min-width: 3em; margin-right: 8px; padding: 1px 8px;
  border-radius: 999px; background: #e8eefb; color: var(--accent); font-size: 13px;
  text-align: center; }
.meta { display: grid; grid-template-columns: max-content 1fr; gap: 2px 14px; margin: 0; }
.meta dt { color: var(--muted); }
.meta dd { margin: 0; overflow-wrap: anywhere; }
.atts { list-style: none; margin: 0; padding: 0; display: flex; flex-wrap: wrap; gap: 6px; }
.atts li { border: 1px solid var(--line); border-radius: 6px; padding: 1px 8px;
  background: #fafbfc; }
.atts .type, .atts .size { color: var(--muted); font-size: 13px; margin-left: 6px; }
.atts .warn { color: #a33; font-size: 13px; margin-left: 6px; }
.bodies { display: grid; grid-template-columns: repeat(auto-fit, minmax(340px, 1fr)); }
.bodies section { min-width: 0; border-right: 1px solid var(--line); }
.bodies section:last-child { border-right: 0; }
.bodies h3 { margin: 0; padding: 6px 18px; font-size: 12px; font-weight: 600;
  text-transform: uppercase; letter-spacing: .06em; color: var(--muted); background: #f8f9fb;
  border-bottom: 1px solid var(--line); }
iframe { display: block; width: 100%; height: 320px; border: 0; background: #fff;
  resize: vertical; overflow: auto; }
pre { margin: 0; padding: 12px 18px; max-height: 320px; overflow: auto; white-space: pre-wrap;
  overflow-wrap: anywhere; font: 13px/1.5 ui-monospace, "DejaVu Sans Mono", monospace; }
.none { padding: 12px 18px; color: var(--muted); font-style: italic; }
footer { padding: 0 32px 32px; color: var(--muted); font-size: 13px; }
.checks { padding: 8px 18px; background: #fff7e0; border-bottom: 1px solid #f0d58a; }
.checks ul { margin: 0; padding-left: 18px; }
.checks .code { font-size: 12px; color: #8a5a00; }
.job-checks { margin: 16px 32px 0; border: 1px solid #f0d58a; border-radius: 8px; }
.job-checks h2 { margin: 0 0 4px; font-size: 15px; }
"""


class Totals(Struct):
    """What the summary says: every message counted, only the first `limit` shown; and where
    each page's cards start and end in the file of cards."""

    count: int = 0
    shown: int = 0
    size: int = 0
    warned: int = 0  # messages with content warnings
    checks: Sequence[str] = ()  # the content checks' lines, one per kind
    bounds: list[int] = field(default_factory=lambda: [0])

    @property
    def pages(self) -> int:
        return max(1, len(self.bounds) - 1)

    def cards_of(self, page: int) -> tuple[int, int]:
        """Byte offsets of page `page` (from 1) in the file of cards."""
        if len(self.bounds) < 2:
            return 0, 0
        return self.bounds[page - 1], self.bounds[page]


def write_index(
    out_dir: Path,
    job_name: str,
    messages: Iterable[Path],
    *,
    limit: int = MAX_MESSAGES,
    page_size: int = PAGE_SIZE,
    warnings_of: Callable[[Path], Sequence[ContentWarning]] = lambda path: (),
    checks: Sequence[str] = (),
) -> Path:
    """Write `out_dir/index.html` (and `index-2.html`, ... when the shown messages fill more
    than one page) for the `.eml` files `messages`, in order; return the first page's path.
    `warnings_of`: a message's content warnings, asked as each comes; `checks`: the summary of
    them all, one line per kind."""
    if limit < 0 or page_size < 1:
        raise ValueError(f"limit {limit}, page_size {page_size}: need limit >= 0, page_size >= 1")
    target = out_dir / page_name(1)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out_dir) as cards:
            totals = _write_cards(cards, messages, limit, page_size, warnings_of)
            totals.checks = checks
            for page in range(1, totals.pages + 1):
                with _replacing(out_dir / page_name(page)) as out:
                    _write_page(out, job_name, totals, page, cards)
            _remove_stale_pages(out_dir, totals.pages)
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        raise StateError(
            f"cannot write the preview {target}: {where}{exc.strerror or exc}"
        ) from None
    return target


def page_name(page: int) -> str:
    return INDEX_NAME if page == 1 else f"index-{page}.html"


def _write_cards(
    out: IO[bytes],
    messages: Iterable[Path],
    limit: int,
    page_size: int,
    warnings_of: Callable[[Path], Sequence[ContentWarning]],
) -> Totals:
    totals = Totals()
    for path in messages:
        size = path.stat().st_size
        warnings = warnings_of(path)
        totals.count += 1
        totals.size += size
        totals.warned += bool(warnings)
        if totals.shown < limit:
            totals.shown += 1
            out.write(card(totals.count, path, size, warnings).encode())
            if totals.shown % page_size == 0:
                totals.bounds.append(out.tell())
    if totals.shown % page_size:
        totals.bounds.append(out.tell())
    return totals


@contextmanager
def _replacing(target: Path) -> Iterator[IO[bytes]]:
    """Write through a temporary file in the same folder, then rename it over `target`."""
    fd, temp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            yield out
        os.chmod(temp, 0o644)
        os.replace(temp, target)
    finally:
        if os.path.exists(temp):
            os.unlink(temp)


def _remove_stale_pages(out_dir: Path, pages: int) -> None:
    """Pages an earlier, longer preview left behind: nothing links to them any more.

    Pages are numbered without gaps, so the first missing one ends the search; listing the
    folder instead would read every one of its (possibly a million) `.eml` names at once.
    """
    page = pages + 1
    while True:
        try:
            (out_dir / page_name(page)).unlink()
        except FileNotFoundError:
            return
        page += 1


def _write_page(out: IO[bytes], job_name: str, totals: Totals, page: int, cards: IO[bytes]) -> None:
    out.write(page_head(job_name, totals, page).encode())
    start, end = totals.cards_of(page)
    cards.seek(start)
    while start < end:
        chunk = cards.read(min(_CHUNK, end - start))
        out.write(chunk)
        start += len(chunk)
    out.write(page_foot(totals, page).encode())


def page_head(job_name: str, totals: Totals, page: int) -> str:
    name = escape(job_name)
    where = f" (page {page} of {totals.pages})" if totals.pages > 1 else ""
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">\n'
        '<meta name="referrer" content="no-referrer">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{name}: batchmail preview{where}</title>\n<style>{_STYLE}</style>\n</head>\n"
        f'<body>\n<header class="summary">\n<h1>{name}<span class="kind">dry-run preview</span>'
        f"</h1>\n{_stats(totals)}</header>\n{_checks(totals)}{_cap_note(totals)}"
        f"{_nav(totals, page)}<main>\n"
    )


def _stats(totals: Totals) -> str:
    items = [
        ("Messages", f"{totals.count:,}"),
        ("Total size", size_html(totals.size)),
        ("Previewed", f"{totals.shown:,}"),
        ("With warnings", f"{totals.warned:,}"),
        ("Report", '<a href="report.json">report.json</a>'),
    ]
    cells = "".join(f"<div><dt>{label}</dt><dd>{value}</dd></div>" for label, value in items)
    return f'<dl class="stats">{cells}</dl>\n'


def _checks(totals: Totals) -> str:
    """The content checks' summary: one line per kind of warning, or that there was none."""
    if not totals.checks:
        return ""
    items = "".join(f"<li>{escape(line)}</li>" for line in totals.checks)
    return (
        '<section class="checks job-checks" aria-label="content checks">'
        f"<h2>Content checks</h2><ul>{items}</ul></section>\n"
    )


def _nav(totals: Totals, page: int) -> str:
    """Links to every page (at most limit / page_size of them); none for a single page."""
    if totals.pages == 1:
        return ""
    links = [
        f'<a aria-current="page" href="{page_name(n)}">{n}</a>'
        if n == page
        else f'<a href="{page_name(n)}">{n}</a>'
        for n in range(1, totals.pages + 1)
    ]
    if page > 1:
        links.insert(0, f'<a rel="prev" href="{page_name(page - 1)}">&lsaquo; previous</a>')
    if page < totals.pages:
        links.append(f'<a rel="next" href="{page_name(page + 1)}">next &rsaquo;</a>')
    return f'<nav class="pages">Page {page} of {totals.pages}: {" ".join(links)}</nav>\n'


def _cap_note(totals: Totals) -> str:
    more = totals.count - totals.shown
    if more <= 0:
        return ""
    files = "file is" if more == 1 else "files are"
    return (
        f'<p class="note">Showing the first {totals.shown:,} of {totals.count:,} messages. '
        f"{more:,} more .eml {files} in this folder, not shown here.</p>\n"
    )


def page_foot(totals: Totals, page: int) -> str:
    return (
        f"</main>\n{_nav(totals, page)}{_cap_note(totals)}<footer>Written by batchmail --dry-run. "
        "HTML bodies are shown sandboxed: no scripts run and nothing is fetched.</footer>\n"
        "</body>\n</html>\n"
    )
