"""`template.inline_css`: the HTML part's `<style>` rules moved into `style=` attributes, as
mail clients that drop `<style>` (Gmail's non-Google accounts, Outlook.com on some views) show
them. The one module that uses css-inline."""

from __future__ import annotations

import css_inline

from batchmail.errors import invalid
from batchmail.load.job import display_path
from batchmail.load.settings import Job


class CssInliner:
    """Inlines the CSS of one job's HTML part, message by message."""

    def __init__(self, job: Job):
        body = job.html_body
        self.template = display_path(job.base_dir / body.name) if body else display_path(job.path)
        # At-rules (@media, @font-face) cannot live in an attribute: they stay in a <style>.
        # A <link>ed stylesheet is never fetched (a run talks to its SMTP server only) and is
        # left in place, like anything else the inliner does not handle.
        self._inliner = css_inline.CSSInliner(
            keep_at_rules=True, keep_link_tags=True, load_remote_stylesheets=False
        )

    def inline(self, html: str, who: str) -> str:
        try:
            return self._inliner.inline(html)
        except (css_inline.InlineError, ValueError) as exc:
            shown = " ".join(str(exc).split()) or type(exc).__name__
            raise invalid(
                self.template, f"cannot inline its CSS: {shown} ({who})", "template.inline_css"
            ) from None
