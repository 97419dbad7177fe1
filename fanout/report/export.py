"""Export an executed notebook with nbconvert: a self-contained HTML page (images as data URIs,
no code, no prompts, no network scripts, a print stylesheet) and Markdown for a code host (figures
as files beside it, relative paths). The templates are ``templates/report.{html,md}.j2``."""
from __future__ import annotations

import os
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

from fanout.report.paths import REPORT_STEM, TEMPLATES

TITLE = "Redis Multi-Instance Testing Report"

_IMG_ALT_FIRST = re.compile(r'<img alt="([^"]*)" src="(data:image/[a-z+]+;base64,[^"]*)"')


#: the appendix's heading: an h2 (any attributes, an empty anchor inside it or not) whose text starts "Appendix"
_APPENDIX_H2 = re.compile(r"<h2\b[^>]*>\s*(?:<a\b[^>]*>\s*</a>\s*)?Appendix\b.*?</h2>", re.IGNORECASE | re.DOTALL)
_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
_ID_ATTR = re.compile(r"""\s(?:id|tabindex)=("[^"]*"|'[^']*')""")
_TAG = re.compile(r"<[^>]*>")


class _OpenElements(HTMLParser):
    """The elements still open at the end of what was fed: (tag, start tag as written, its offset)."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=False)
        self._line_starts = [0] + [m.end() for m in re.finditer("\n", text)]
        self.stack: list[tuple[str, str, int]] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs) -> None:
        if tag not in _VOID:
            line, col = self.getpos()
            self.stack.append((tag, self.get_starttag_text() or f"<{tag}>", self._line_starts[line - 1] + col))

    def handle_endtag(self, tag) -> None:
        for i in range(len(self.stack) - 1, -1, -1):
            if self.stack[i][0] == tag:
                del self.stack[i:]
                return


def collapse_appendix(page: str) -> str:
    """Everything from the appendix's heading to the end of the page inside a ``<details
    class="appendix">``: closed on screen, so that the reader meets the findings first; the print
    stylesheet (and a ``beforeprint`` handler) open it on paper.

    The summary repeats the heading (shown on screen only; the heading itself, marked
    ``appendix-heading``, prints and is hidden on screen). The details begin at the page-level block
    (the notebook cell) that holds the heading when nothing readable comes before the heading in it
    (an anchor, a page break); else that block's ``<div>``s are closed before the details and opened
    again inside (without their ids), so the page stays well nested. A page without such a heading,
    or with it inside anything but ``<div>``s, is returned as it is."""
    m = _APPENDIX_H2.search(page)
    if not m:
        return page
    root = max(page.rfind("<main", 0, m.start()), page.rfind("<body", 0, m.start()))
    end = page.rfind("</main>" if page.startswith("<main", root) else "</body>")
    if root < 0 or end < m.end():
        return page
    inner = _OpenElements(page[root:m.start()]).stack[1:]
    if any(tag != "div" for tag, _, _ in inner):
        return page
    heading = re.sub(r"^<h2\b", '<h2 class="appendix-heading"', m.group(0))
    summary = ('<details class="appendix"><summary class="jp-RenderedHTMLCommon"><h2>'
               + _TAG.sub("", m.group(0)).strip() + "</h2></summary>")
    body = page[:m.start()] + heading + page[m.end():end]
    start = root + inner[0][2] if inner else m.start()
    if inner and _TAG.sub("", page[start:m.start()]).strip():  # text before the heading in its block: split it
        close = "</div>" * len(inner)
        reopen = "".join(_ID_ATTR.sub("", raw) for _, raw, _ in inner)
        return body[:m.start()] + close + summary + reopen + body[m.start():] + "</details>\n" + page[end:]
    return body[:start] + summary + body[start:] + "</details>\n" + page[end:]


def _export_copy(executed: Path, title: str):
    """The executed notebook prepared for export: no stderr streams (progress lines, warnings),
    no code cells without output (the parameter cells), a title."""
    import nbformat

    nb = nbformat.read(str(executed), as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = [o for o in cell.get("outputs", [])
                            if not (o.get("output_type") == "stream" and o.get("name") == "stderr")]
    nb.cells = [c for c in nb.cells if c.cell_type != "code" or c.outputs]
    nb.metadata["title"] = title
    return nb


def export_notebook(executed: str | os.PathLike, out_dir: str | os.PathLike, stem: str = REPORT_STEM,
                    title: str = TITLE) -> tuple[Path, Path]:
    """Write ``<out_dir>/<stem>.html`` and ``<out_dir>/<stem>.md`` (figures in
    ``<out_dir>/<stem>_files/``) from an executed notebook. Returns the two paths."""
    from nbconvert import HTMLExporter, MarkdownExporter
    from nbconvert.writers import FilesWriter

    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    nb = _export_copy(Path(executed), title)
    hide = {"exclude_input": True, "exclude_input_prompt": True, "exclude_output_prompt": True}
    paths = [str(TEMPLATES)]

    html_exporter = HTMLExporter(template_name="lab", extra_template_paths=paths, template_file="report.html.j2",
                                 exclude_anchor_links=True, **hide)
    body, _res = html_exporter.from_notebook_node(nb, resources={"metadata": {"name": title}})
    # nbconvert re-serialises the page with attributes sorted (alt before src); put src first again
    body = _IMG_ALT_FIRST.sub(r'<img src="\2" alt="\1"', body)
    body = collapse_appendix(body)
    html_path = out_dir / f"{stem}.html"
    html_path.write_text(body, encoding="utf-8")

    md_exporter = MarkdownExporter(extra_template_paths=paths, template_file="report.md.j2", **hide)
    files_dir = f"{stem}_files"
    shutil.rmtree(out_dir / files_dir, ignore_errors=True)
    body, res = md_exporter.from_notebook_node(
        nb, resources={"metadata": {"name": stem}, "output_files_dir": files_dir, "unique_key": stem})
    FilesWriter(build_directory=str(out_dir)).write(body, res, notebook_name=stem)
    return html_path, out_dir / f"{stem}.md"


__all__ = ["collapse_appendix", "export_notebook", "TITLE"]
