"""The one Jinja2 environment: sandboxed, StrictUndefined, autoescaping for HTML only."""

from __future__ import annotations

import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jinja2
from jinja2.sandbox import SandboxedEnvironment
from msgspec import Struct, field

from batchmail.errors import InvalidJobError, Problem, invalid
from batchmail.load.job import display_path
from batchmail.load.recipients import Recipient
from batchmail.load.row_filter import RowTest
from batchmail.load.settings import Job, TemplateRef

_HTML_SUFFIXES = (".html", ".htm", ".xhtml", ".xml", ".html.j2", ".htm.j2", ".html.jinja")
_INLINE = "@inline:"


class Rendered(Struct, frozen=True):
    subject: str
    text: str | None
    html: str | None
    attachment_paths: Mapping[int, str]  # index of a templated attachment spec -> rendered path
    unsubscribe: Mapping[str, str] = field(default_factory=dict)  # "url" / "mailto" -> rendered


class _JobLoader(jinja2.BaseLoader):
    """Files below base_dir, plus the job file's inline templates under pseudo-names."""

    def __init__(self, base_dir: Path, inline: Mapping[str, str]):
        self.files = jinja2.FileSystemLoader(str(base_dir))
        self.inline = inline

    def get_source(
        self, environment: jinja2.Environment, template: str
    ) -> tuple[str, str | None, Callable[[], bool] | None]:
        if template in self.inline:
            return self.inline[template], template, lambda: True
        return self.files.get_source(environment, template)


class Renderer:
    """Compiles the job's templates once; renders them per recipient."""

    def __init__(self, job: Job):
        self.job = job
        self._where: dict[str, str] = {}  # template filename -> `file:line` of its first line
        subject_name = self._inline("subject", job.subject_where)
        inline = {subject_name: job.subject}
        path_names: dict[int, str] = {}
        for index, spec in enumerate(job.attachments):
            if spec.templated:
                path_names[index] = self._inline(f"attachments[{index}].path", spec.where)
                inline[path_names[index]] = spec.pattern
        unsubscribe_names = self._unsubscribe_templates(inline)
        html_name = job.html.name if job.html else None
        self._sources = inline  # the loader's: templates added later are found there too
        self.env = SandboxedEnvironment(
            loader=_JobLoader(job.base_dir, inline),
            undefined=jinja2.StrictUndefined,
            autoescape=lambda name: (
                name is not None and (name == html_name or name.lower().endswith(_HTML_SUFFIXES))
            ),
            keep_trailing_newline=True,
        )
        self.subject = self._load(subject_name, None)
        self.paths = {index: self._load(name, None) for index, name in path_names.items()}
        self.unsubscribe = {key: self._load(name, None) for key, name in unsubscribe_names.items()}
        body = job.text or job.markdown  # a Markdown body renders as the text, then to HTML
        self.text = self._load(body.name, body) if body else None
        self.html = self._load(job.html.name, job.html) if job.html else None

    def _unsubscribe_templates(self, inline: dict[str, str]) -> dict[str, str]:
        """Adds unsubscribe.url / .mailto to `inline`; returns their template names."""
        settings = self.job.unsubscribe
        if settings is None:
            return {}
        names: dict[str, str] = {}
        for key, value, where in (
            ("url", settings.url, settings.url_where),
            ("mailto", settings.mailto, settings.mailto_where),
        ):
            if value is not None:
                names[key] = self._inline(f"unsubscribe.{key}", where)
                inline[names[key]] = value
        return names

    def inline_template(self, field: str, source: str, where: str) -> jinja2.Template:
        """A further template of the job file (`field` at `where`), in the same environment."""
        name = self._inline(field, where)
        self._sources[name] = source
        return self._load(name, None)

    def context(self, recipient: Recipient) -> dict[str, Any]:
        return {**self.env.globals, **self.job.vars, **recipient.fields}

    def render_in(self, template: jinja2.Template, context: dict[str, Any], who: Recipient) -> str:
        """One template for one recipient, with the `context` made for them."""
        return self._render(template, context, who)

    def _inline(self, field: str, where: str) -> str:
        name = f"{_INLINE}{field}"
        self._where[name] = where
        return name

    def _load(self, name: str, ref: TemplateRef | None) -> jinja2.Template:
        try:
            template = self.env.get_template(name)
        except jinja2.TemplateSyntaxError as exc:
            raise invalid(
                self._locate(exc.filename or name, exc.lineno),
                f"template syntax error: {exc.message}",
            ) from None
        except jinja2.TemplateNotFound as exc:
            where = ref.where if ref else self._where.get(name, "")
            shown = display_path(self.job.base_dir / exc.name) if exc.name else name
            raise invalid(
                where, f"template file not found (or outside base_dir): {shown}"
            ) from None
        if template.filename and template.filename not in self._where:
            self._where[template.filename] = display_path(Path(template.filename))
        return template

    def row_test(self) -> RowTest | None:
        """The job's `where:` compiled in the templates' sandbox: whether a row is a recipient."""
        selection = self.job.row_filter
        if selection is None:
            return None
        try:
            expression = self.env.compile_expression(selection.expression, undefined_to_none=False)
        except jinja2.TemplateSyntaxError as exc:
            raise invalid(selection.where, f"syntax error: {exc.message}", "where") from None
        shared = {**self.env.globals, **self.job.vars}

        def test(fields: Mapping[str, Any], origin: str) -> bool:
            try:
                return bool(expression({**shared, **fields}))
            except Exception as exc:
                message = exc.message if isinstance(exc, jinja2.TemplateError) else None
                shown = message or f"{type(exc).__name__}: {exc}"
                raise invalid(
                    origin, f"{shown} (the expression at {selection.where})", "where"
                ) from None

        return test

    def render(self, recipient: Recipient) -> Rendered:
        """Render every template for one recipient; any failure is an InvalidJobError."""
        context = self.context(recipient)
        return Rendered(
            subject=self._render(self.subject, context, recipient),
            text=self._render(self.text, context, recipient) if self.text else None,
            html=self._render(self.html, context, recipient) if self.html else None,
            attachment_paths={
                i: self._render(t, context, recipient) for i, t in self.paths.items()
            },
            unsubscribe={
                k: self._render(t, context, recipient) for k, t in self.unsubscribe.items()
            },
        )

    def _render(self, template: jinja2.Template, context: dict[str, Any], who: Recipient) -> str:
        """`Template.render`, but with the globals already in `context`: `render` would merge
        them into a new dict for each template, which is a third of the time it takes."""
        try:
            try:
                render = template.root_render_func(template.new_context(context, shared=True))
                return self.env.concat(render)
            except Exception:
                self.env.handle_exception()  # raises it again, traceback in template lines
        except Exception as exc:
            raise self._render_error(exc, template, who) from None

    def _render_error(
        self, exc: Exception, template: jinja2.Template, who: Recipient
    ) -> InvalidJobError:
        name, line = template.filename or template.name or "", 1
        for frame, lineno in traceback.walk_tb(exc.__traceback__):
            if self._is_template(frame.f_code.co_filename):  # the innermost, for includes
                name, line = frame.f_code.co_filename, lineno
        message = (
            exc.message
            if isinstance(exc, jinja2.TemplateError) and exc.message
            else (f"{type(exc).__name__}: {exc}")
        )
        return InvalidJobError([Problem(self._locate(name, line), f"{message} ({who.describe()})")])

    def _is_template(self, filename: str) -> bool:
        return filename in self._where or Path(filename).is_relative_to(self.job.base_dir)

    def _locate(self, filename: str, line: int | None) -> str:
        """`file:line` for a template line; inline templates map onto the job file's lines."""
        where = self._where.get(filename) or display_path(Path(filename))
        if filename.startswith(_INLINE):
            path, _, first = where.rpartition(":")
            return f"{path}:{int(first) + (line or 1) - 1}"
        return f"{where}:{line or 1}"
