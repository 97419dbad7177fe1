"""The report as a reader prints it: HTML printed to A4 by a headless Chromium, read back per page
with poppler (fanout.report.pdf). The committed example: how many pages come before its appendix,
what page one holds, no table cut at the right edge, readiness marks that print. A synthetic page
through the real template shows the machinery and the print stylesheet in seconds: a too-wide table
is cut without the print CSS (the check sees it) and whole with it; the appendix is closed on
screen and open on paper.

Without Chromium (or poppler) the printing tests skip here with one line; in CI (CI=true) they fail:
.ci/run installs Debian's chromium and poppler-utils."""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from html.parser import HTMLParser

import pytest

from conftest import ROOT
from fanout.report import pdf
from fanout.report.export import collapse_appendix
from fanout.report.pdf import PdfError, print_to_pdf, read_pdf, table_words, unprinted

EXAMPLE = ROOT / "reports" / "example"
EXAMPLE_HTML = EXAMPLE / "validation-report.html"
#: issue #24: a team lead reads twelve pages; the appendix may follow
MAX_PAGES_BEFORE_APPENDIX = 12
MM = 72 / 25.4


@pytest.fixture(scope="session")
def chromium() -> str:
    """A Chromium and poppler to print and read with; absent: skip here, fail in CI."""
    found = pdf.find_chromium()
    missing = [what for what, ok in (("Chromium (apt-get install chromium)", found),
                                     ("pdftotext/pdfinfo (apt-get install poppler-utils)",
                                      shutil.which("pdftotext") and shutil.which("pdfinfo"))) if not ok]
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"no {' and no '.join(missing)} in CI: .ci/run installs them")
        pytest.skip(f"no {' and no '.join(missing)}: printing the report needs it; CI installs it")
    return found


def right_edge(html_text: str, width_pt: float) -> float:
    """Where the page's printable area ends (points): the width less the print stylesheet's right
    ``@page`` margin (``margin: T R B L`` in mm), or the width when it states none."""
    m = re.search(r"@page\s*{[^}]*margin:\s*[\d.]+mm\s+([\d.]+)mm", html_text)
    return width_pt - (float(m.group(1)) * MM if m else 0.0)


def heading_text(html_text: str) -> str:
    """The appendix's heading as the page prints it (tags and symbols' spacing as in the PDF)."""
    m = re.search(r"<h2\b[^>]*>\s*(?:<a\b[^>]*>\s*</a>\s*)?(Appendix\b.*?)</h2>", html_text, re.DOTALL)
    assert m, "the page has no appendix heading"
    return re.sub(r"\s+", " ", re.sub(r"<[^>]*>", "", m.group(1))).strip()


# ---------------------------------------------------------------- errors: one line, no Chromium needed


def test_a_chromium_named_by_the_environment_that_does_not_exist_is_one_line(monkeypatch):
    monkeypatch.setenv(pdf.CHROMIUM_ENV, "/nonexistent/chromium")
    with pytest.raises(PdfError) as err:
        pdf.find_chromium()
    assert "FANOUT_CHROMIUM" in str(err.value) and "\n" not in str(err.value)


def test_no_chromium_on_path_is_one_line_saying_what_to_install(monkeypatch, tmp_path):
    monkeypatch.delenv(pdf.CHROMIUM_ENV, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert pdf.find_chromium() is None
    with pytest.raises(PdfError, match=r"^no Chromium found .*apt-get install chromium") as err:
        pdf.print_to_pdf(EXAMPLE_HTML, tmp_path / "out.pdf")
    assert "\n" not in str(err.value)


def test_a_browser_that_fails_is_one_line_and_leaves_no_pdf(monkeypatch, tmp_path):
    false = shutil.which("false")
    if false is None:
        pytest.skip("no 'false' executable")
    monkeypatch.setenv(pdf.CHROMIUM_ENV, false)
    page = tmp_path / "page.html"
    page.write_text("<html><body><p>x</p></body></html>", encoding="utf-8")
    with pytest.raises(PdfError, match=r"failed to print page\.html: exit status 1$") as err:
        pdf.print_to_pdf(page, tmp_path / "page.pdf")
    assert "\n" not in str(err.value) and not (tmp_path / "page.pdf").exists()


# ---------------------------------------------------------------- collapse_appendix, no Chromium needed


class _Depth(HTMLParser):
    """Open non-void elements when the document ends (a well-nested page ends with none)."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []

    def handle_starttag(self, tag, attrs) -> None:
        if tag not in {"br", "img", "meta", "link", "hr", "input"}:
            self.stack.append(tag)

    def handle_endtag(self, tag) -> None:
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes <{self.stack[-1] if self.stack else None}>"
        self.stack.pop()


def _nested(page: str) -> bool:
    d = _Depth()
    d.feed(page)
    return not d.stack


def test_the_appendix_folds_from_the_cell_holding_its_heading_to_the_end_and_the_page_stays_nested():
    cell = ('<div class="jp-Cell"><div class="out"><div class="pagebreak"></div><p><a id="appendix"></a></p>{}'
            "</div></div>")
    page = ("<html><body><main>" + cell.format("<h2>Findings</h2><p>before</p>")
            + cell.format('<h2 id="Appendix:-runs">Appendix: runs</h2><table><tr><td>run-1</td></tr></table>')
            + cell.format("<p>after</p>") + "</main></body></html>")
    out = collapse_appendix(page)
    assert _nested(out)
    before, folded = out.split('<details class="appendix">')
    assert "before" in before and "Appendix" not in before
    assert folded.startswith('<summary class="jp-RenderedHTMLCommon"><h2>Appendix: runs</h2></summary>'
                             '<div class="jp-Cell"><div class="out"><div class="pagebreak">')
    assert '<h2 class="appendix-heading" id="Appendix:-runs">Appendix: runs</h2>' in folded
    assert folded.index("run-1") < folded.index("after") < folded.index("</details>") < folded.index("</main>")


def test_an_appendix_heading_after_text_in_its_cell_splits_the_cell_without_repeating_its_ids():
    page = ('<html><body><main><div class="jp-Cell" id="c1"><div class="out"><p>the conclusion</p>'
            "<h2>Appendix: provenance</h2><p>the runs</p></div></div></main></body></html>")
    out = collapse_appendix(page)
    assert _nested(out) and out.count('id="c1"') == 1
    before, folded = out.split('<details class="appendix">')
    assert "the conclusion" in before and "the runs" in folded


def test_a_page_without_an_appendix_is_left_as_it_is():
    page = "<html><body><main><div><h2>Appendixes are elsewhere</h2><h2>Findings</h2></div></main></body></html>"
    assert collapse_appendix(page) == page


# ---------------------------------------------------------------- the machinery on synthetic pages (seconds)


def test_a_page_prints_on_a4_and_reads_back_page_by_page(chromium, tmp_path):
    page = tmp_path / "two.html"
    page.write_text('<html><head><style>.brk { break-after: page; }</style></head><body>'
                    '<h1>First page title</h1><p class="brk">some words on page one</p>'
                    "<h2>Appendix: the second page</h2><p>closing words</p></body></html>", encoding="utf-8")
    doc = read_pdf(print_to_pdf(page))
    assert doc.path == tmp_path / "two.pdf" and doc.page_count == 2
    assert all(abs(p.width - 210 * MM) < 1 and abs(p.height - 297 * MM) < 1 for p in doc.pages)  # A4
    one, two = doc.pages
    assert one.lines[:2] == ["First page title", "some words on page one"]
    assert doc.page_with_line("Appendix: the second") is two and doc.page_with_line("the second page") is None
    assert two.contains("closing  words") and not one.contains("closing words")
    assert all(0 <= w.x_min < w.x_max <= p.width and 0 <= w.y_min < w.y_max <= p.height
               for p in doc.pages for w in p.words)


#: ids with no place to break a line (digests: a hyphen or a slash would be one), as the report writes ids (code)
WIDE_IDS = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(4)]
#: three such columns are three times wider than A4: more than Chromium's print shrinks a page by to fit it
#: (at most 2×), so without the print CSS the table is cut
WIDE_TABLE = ("| run | record digest | signing key | role | transport | delivered | lost | p99 ms | verdict |\n"
              "|---|---|---|---|---|---|---|---|---|\n"
              + "".join(f"| `{rid}` | `{rid[::-1]}` | `{rid.upper()}` | scenario | pub/sub | 1,234,567 | 0 | 12.50 "
                        "| PASS |\n" for rid in WIDE_IDS))


@pytest.fixture(scope="module")
def synthetic(chromium, tmp_path_factory):
    """A small notebook (a too-wide table, an appendix) exported with the report's own template and
    printed: (html text, PDF)."""
    import nbformat

    from fanout.report.export import export_notebook

    folder = tmp_path_factory.mktemp("synthetic")
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# A synthetic report\n\nThe findings come first."),
                nbformat.v4.new_markdown_cell("## Runs\n\n" + WIDE_TABLE),
                nbformat.v4.new_markdown_cell('<div class="pagebreak"></div>\n\n## Appendix: exact parameters\n\n'
                                              "| parameter | value |\n|---|---|\n| seed | `20251017` |\n"),
                nbformat.v4.new_markdown_cell("The last words of the appendix.")]
    nbformat.write(nb, str(folder / "in.ipynb"))
    html, _md = export_notebook(folder / "in.ipynb", folder, stem="synthetic")
    return html.read_text(encoding="utf-8"), read_pdf(print_to_pdf(html))


def test_a_too_wide_table_is_cut_without_the_print_css_and_whole_with_it(chromium, synthetic, tmp_path):
    from nbconvert.filters.markdown import markdown2html

    bare = tmp_path / "bare.html"  # the same table without the report's stylesheet: Chromium cuts it at the edge
    bare.write_text(f"<html><body>{markdown2html(WIDE_TABLE)}</body></html>", encoding="utf-8")
    cut = read_pdf(print_to_pdf(bare))
    words = table_words(bare.read_text(encoding="utf-8"))
    assert len(words) > 20 and unprinted(words, cut), "the check must see a table cut at the page's edge"
    assert any(p.beyond(p.width - 10 * MM) for p in cut.pages), "and the words left at the edge"

    html, doc = synthetic
    assert unprinted(table_words(html), doc) == []
    for p in doc.pages:
        assert p.beyond(right_edge(html, p.width) + 1) == [], f"page {p.number}: words past the right margin"
    assert set(WIDE_IDS) <= set(table_words(html))  # the ids are checked too, wrapped or not


def test_the_appendix_is_closed_on_screen_and_printed_open(synthetic):
    html, doc = synthetic
    assert re.search(r'<details class="appendix"><summary[^>]*><h2>Appendix: exact parameters</h2></summary>', html)
    assert "<details open" not in html and 'class="appendix" open' not in html
    page = doc.page_with_line("Appendix: exact parameters")
    assert page is not None and page.number == 2, "the appendix starts on the page after the forced break"
    assert sum(line.startswith("Appendix: exact parameters") for p in doc.pages for line in p.lines) == 1, \
        "the heading prints once: the summary repeating it is for the screen"
    assert page.contains("seed 20251017") and doc.pages[-1].contains("The last words of the appendix.")


# ---------------------------------------------------------------- the committed example


@pytest.fixture(scope="module")
def example(chromium, tmp_path_factory):
    """The committed example printed once: (html text, report.json, PDF)."""
    html = EXAMPLE_HTML.read_text(encoding="utf-8")
    archive = json.loads((EXAMPLE / "report.json").read_text(encoding="utf-8"))
    return html, archive, read_pdf(print_to_pdf(EXAMPLE_HTML, tmp_path_factory.mktemp("example") / "example.pdf"))


def test_the_example_prints_its_appendix_open_after_the_findings(example):
    html, _archive, doc = example
    page = doc.page_with_line(heading_text(html))
    assert page is not None, f"the appendix heading {heading_text(html)!r} is on no page of {doc.page_count}"
    last = re.sub(r"<[^>]*>", "", re.findall(r"<p>(.*?)</p>", html, re.DOTALL)[-1])
    assert any(p.contains(last) for p in doc.pages[page.number - 1:]), "the appendix's last words are not printed"


def test_the_example_has_at_most_twelve_pages_before_its_appendix(example):
    html, _archive, doc = example
    page = doc.page_with_line(heading_text(html))
    assert page is not None
    before = page.number - 1
    assert before <= MAX_PAGES_BEFORE_APPENDIX, \
        f"{before} pages before the appendix (it starts on page {page.number} of {doc.page_count})"


def test_page_one_of_the_example_holds_the_verdict(example):
    _html, archive, doc = example
    word = "PASS" if archive["passed"] else "FAIL"
    assert doc.pages[0].contains(f"Verdict: {word}"), doc.pages[0].text[:400]


def test_page_one_of_the_example_holds_the_recommendation(example):
    _html, archive, doc = example
    headline = archive["facts"]["recommendation"]["headline"]
    assert headline.startswith("Recommendation: ")
    shown = headline.replace("`", "")  # Markdown's code marks are not on paper
    assert doc.pages[0].contains(shown), f"page one lacks the recommendation {headline!r}"


def test_no_table_of_the_example_is_cut_at_the_right_edge(example):
    html, _archive, doc = example
    words = table_words(html)
    assert len(words) > 500
    assert unprinted(words, doc) == []
    for p in doc.pages:
        assert p.beyond(right_edge(html, p.width) + 1) == [], f"page {p.number}: words past the right margin"


def test_the_example_readiness_marks_print_as_text_that_says_what_they_mean(example):
    _html, _archive, doc = example
    marks = {"☑": "met", "☒": "not met", "☐": "not measured"}
    items = [line for p in doc.pages for line in p.lines if line[:1] in marks]
    assert len(items) >= 8
    for line in items:
        assert line[2:].startswith(marks[line[0]] + " — "), line


def test_fanout_report_pdf_writes_the_pdf_beside_the_html_or_says_in_one_line_why_not(monkeypatch, tmp_path):
    from fanout.cli.report import print_pdf

    page = tmp_path / "validation-report.html"
    page.write_text("<html><body><h1>Verdict: PASS</h1></body></html>", encoding="utf-8")
    monkeypatch.setenv(pdf.CHROMIUM_ENV, "/nonexistent/chromium")
    said = print_pdf(page)
    assert said.startswith("not written: $FANOUT_CHROMIUM=") and "\n" not in said
    assert not (tmp_path / "validation-report.pdf").exists()
    monkeypatch.delenv(pdf.CHROMIUM_ENV)
    if pdf.find_chromium() is None:
        return  # the line above is what a machine without Chromium prints
    assert print_pdf(page) == str(tmp_path / "validation-report.pdf")
    assert read_pdf(tmp_path / "validation-report.pdf").pages[0].contains("Verdict: PASS")
