"""What a job derives from each rendered HTML body: its CSS inlined (`template.inline_css`),
then the text part (`template.text: auto`). Their libraries are loaded only by the jobs that
use them."""

from __future__ import annotations

from collections.abc import Callable

from batchmail.load.settings import Job


class FromHtml:
    def __init__(self, job: Job):
        self.job = job
        self.inline_css: Callable[[str, str], str] | None = None
        self.to_text: Callable[[str, Job, str], str] | None = None
        # Imported here, not above: css-inline and markdownify (with Beautiful Soup) take longer
        # to load than a small job takes to send.
        if job.inline_css:
            from batchmail.build.css_inlining import CssInliner  # noqa: PLC0415

            self.inline_css = CssInliner(job).inline
        if job.text_auto:
            from batchmail.build.html_text import html_to_text  # noqa: PLC0415

            self.to_text = html_to_text

    @classmethod
    def for_job(cls, job: Job) -> FromHtml | None:
        return cls(job) if job.inline_css or job.text_auto else None

    def apply(self, html: str, text: str | None, who: str) -> tuple[str, str | None]:
        """The HTML with its CSS inlined, and the text part derived from that HTML (or `text`,
        as rendered); `who` names the recipient in an error."""
        if self.inline_css is not None:
            html = self.inline_css(html, who)
        if self.to_text is not None:
            text = self.to_text(html, self.job, who)
        return html, text
