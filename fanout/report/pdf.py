"""The report as a reader prints it: the HTML page printed to an A4 PDF by a headless Chromium, and
that PDF read back page by page (text, word boxes) with poppler's ``pdftotext``/``pdfinfo``.

Why a real browser: what a team lead holds is what Chromium's print engine makes of the page — page
breaks, tables that fit or are cut at the right edge, a collapsed appendix that must open on paper.
Only printing it shows that; ``tests/test_pdf.py`` reads the result back. ``fanout report --pdf``
writes the PDF beside the HTML when a Chromium is installed."""
from __future__ import annotations

import html as _html
import os
import re
import shutil
import subprocess
import tempfile
import unicodedata
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

from fanout.errors import ConfigError

#: the executables tried, in order, after ``$FANOUT_CHROMIUM``
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CHROMIUM_ENV = "FANOUT_CHROMIUM"
#: a 3.5 MB report prints in ~4 s on 2 cores; the bound only stops a hung browser
PRINT_TIMEOUT_S = 180.0
READ_TIMEOUT_S = 60.0
#: A4 unless the page's own ``@page`` says otherwise (Chromium's own default is US Letter); put first
#: in <head> so that any rule of the page wins
_DEFAULT_PAGE = "<style>@page { size: A4; }</style>"
_HEAD = re.compile(r"<head\b[^>]*>", re.IGNORECASE)


class PdfError(ConfigError):
    """No Chromium or poppler, or the print failed: one line saying which and what to install."""


def find_chromium() -> str | None:
    """``$FANOUT_CHROMIUM`` (a path or a name on PATH), else the first of :data:`CHROMIUM_NAMES` on
    PATH; ``None`` when there is none. A ``$FANOUT_CHROMIUM`` that names nothing runnable is a user
    mistake, said in one line rather than silently replaced by another browser."""
    given = os.environ.get(CHROMIUM_ENV)
    if given:
        found = shutil.which(given)
        if not found:
            raise PdfError(f"${CHROMIUM_ENV}={given!r} is not an executable Chromium")
        return found
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def require_chromium() -> str:
    """The Chromium to print with, or a one-line :class:`PdfError` saying how to get one."""
    found = find_chromium()
    if not found:
        raise PdfError(f"no Chromium found ({', '.join(CHROMIUM_NAMES)} or ${CHROMIUM_ENV}): "
                       "apt-get install chromium to print the report to PDF")
    return found


def _tool(name: str) -> str:
    found = shutil.which(name)
    if not found:
        raise PdfError(f"{name} not found: apt-get install poppler-utils to read a PDF back")
    return found


def _printable_copy(html: Path, folder: Path) -> Path:
    """``html`` copied into ``folder`` with A4 as the default page and a ``<base>`` at its own folder
    (so relative images still load): the original is never touched."""
    text = html.read_text(encoding="utf-8")
    inject = f'<base href="{_html.escape(html.parent.resolve().as_uri())}/">{_DEFAULT_PAGE}'
    m = _HEAD.search(text)
    text = text[:m.end()] + inject + text[m.end():] if m else inject + text
    copy = folder / "page.html"
    copy.write_text(text, encoding="utf-8")
    return copy


def print_to_pdf(html: str | os.PathLike, pdf: str | os.PathLike | None = None, *, chromium: str | None = None,
                 timeout_s: float = PRINT_TIMEOUT_S) -> Path:
    """Print ``html`` to ``pdf`` (default: the same name, ``.pdf``) with headless Chromium: A4 unless
    the page's ``@page`` says otherwise, no browser header/footer (``--no-pdf-header-footer``, the
    flag since Chrome 111), a throwaway profile. Returns the PDF's path; any failure is one line."""
    html = Path(html)
    if not html.is_file():
        raise PdfError(f"{html}: no such HTML file to print")
    pdf = Path(pdf) if pdf is not None else html.with_suffix(".pdf")
    browser = chromium or require_chromium()
    with tempfile.TemporaryDirectory(prefix="fanout-pdf-") as tmp:
        folder = Path(tmp)
        page = _printable_copy(html, folder)
        out = folder / "out.pdf"
        cmd = [browser, "--headless", "--disable-gpu", "--no-first-run", "--disable-extensions",
               "--no-pdf-header-footer", f"--user-data-dir={folder / 'profile'}",
               f"--print-to-pdf={out}", page.as_uri()]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            cmd.insert(1, "--no-sandbox")  # Chromium refuses to start as root with its sandbox
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s,
                                  env={**os.environ, "HOME": str(folder)})
        except subprocess.TimeoutExpired:
            raise PdfError(f"{browser} did not print {html.name} within {timeout_s:g} s") from None
        except OSError as exc:
            raise PdfError(f"{browser} could not be started: {exc.strerror or exc}") from None
        if proc.returncode != 0 or not out.is_file() or out.stat().st_size == 0:
            why = _last_error(proc.stderr) or f"exit status {proc.returncode}"
            raise PdfError(f"{browser} failed to print {html.name}: {why}")
        pdf.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(out), pdf)
    return pdf


def _last_error(stderr: str) -> str:
    """The last line of Chromium's stderr that is not its routine D-Bus noise (no bus in a container)."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip() and "dbus" not in ln.lower()]
    return lines[-1][:200] if lines else ""


# ---------------------------------------------------------------- reading the PDF back


@dataclass(frozen=True)
class Word:
    """One word as poppler placed it, in points from the page's top left corner."""
    text: str
    x_min: float
    y_min: float
    x_max: float
    y_max: float


def _squash(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


@dataclass(frozen=True)
class Page:
    """One printed page: its size in points, its words with their boxes, and its lines (words whose
    tops are within 2 pt, left to right)."""
    number: int
    width: float
    height: float
    words: tuple[Word, ...]

    @property
    def lines(self) -> list[str]:
        rows: list[list[Word]] = []
        for w in sorted(self.words, key=lambda w: (w.y_min, w.x_min)):
            if rows and abs(rows[-1][0].y_min - w.y_min) <= 2.0:
                rows[-1].append(w)
            else:
                rows.append([w])
        return [" ".join(w.text for w in sorted(r, key=lambda w: w.x_min)) for r in rows]

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def contains(self, phrase: str) -> bool:
        """``phrase`` on this page, whitespace-insensitive (a line break may fall anywhere, also
        inside a long id that the page wrapped) and symbol-insensitive (an emoji is a box, or
        nothing, in the text of a PDF printed without an emoji font)."""
        return _glyphs(phrase) in _glyphs(self.text)

    def beyond(self, right: float) -> list[Word]:
        """Words whose box ends right of ``right`` (points): cut off, or about to be."""
        return [w for w in self.words if w.x_max > right]


@dataclass(frozen=True)
class PdfDocument:
    path: Path
    pages: tuple[Page, ...]

    @property
    def page_count(self) -> int:
        return len(self.pages)

    @property
    def text(self) -> str:
        return "\n".join(p.text for p in self.pages)

    def page_with_line(self, start: str) -> Page | None:
        """The first page with a line beginning with ``start`` (a heading, say), else ``None``."""
        want = _squash(start)
        for page in self.pages:
            if any(_squash(line).startswith(want) for line in page.lines):
                return page
        return None


def read_pdf(pdf: str | os.PathLike) -> PdfDocument:
    """The PDF's pages (size, words with boxes) via ``pdftotext -bbox`` (poppler); the page count is
    checked against ``pdfinfo`` so that an empty page is still counted."""
    pdf = Path(pdf)
    if not pdf.is_file():
        raise PdfError(f"{pdf}: no such PDF")
    try:
        info = subprocess.run([_tool("pdfinfo"), str(pdf)], capture_output=True, text=True, timeout=READ_TIMEOUT_S)
        boxes = subprocess.run([_tool("pdftotext"), "-bbox", "-enc", "UTF-8", str(pdf), "-"], capture_output=True,
                               text=True, timeout=READ_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise PdfError(f"poppler did not read {pdf.name} within {READ_TIMEOUT_S:g} s") from None
    if info.returncode != 0 or boxes.returncode != 0:
        raise PdfError(f"{pdf.name} is not a readable PDF: {(info.stderr or boxes.stderr).strip()[:200]}")
    m = re.search(r"^Pages:\s+(\d+)", info.stdout, re.MULTILINE)
    declared = int(m.group(1)) if m else None
    pages = _parse_bbox(boxes.stdout)
    if declared is not None and declared != len(pages):
        raise PdfError(f"{pdf.name}: pdfinfo counts {declared} pages, pdftotext read {len(pages)}")
    return PdfDocument(pdf, tuple(pages))


def _parse_bbox(xhtml: str) -> list[Page]:
    ns = {"x": "http://www.w3.org/1999/xhtml"}
    root = ET.fromstring(re.sub(r"<!DOCTYPE[^>]*>", "", xhtml, count=1))
    pages = []
    for i, p in enumerate(root.iterfind(".//x:page", ns), start=1):
        words = tuple(Word(w.text or "", float(w.get("xMin")), float(w.get("yMin")), float(w.get("xMax")),
                           float(w.get("yMax"))) for w in p.iterfind("x:word", ns))
        pages.append(Page(i, float(p.get("width")), float(p.get("height")), words))
    return pages


# ---------------------------------------------------------------- tables: every cell's words on paper


class _Cells(HTMLParser):
    """The text of every ``<td>``/``<th>`` of a page, ``<br>`` as a space."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.cells: list[str] = []
        self._cur: list[str] | None = None

    def handle_starttag(self, tag, attrs) -> None:
        if tag in ("td", "th"):
            self._cur = []
        elif tag == "br" and self._cur is not None:
            self._cur.append(" ")

    def handle_endtag(self, tag) -> None:
        if tag in ("td", "th") and self._cur is not None:
            self.cells.append("".join(self._cur))
            self._cur = None

    def handle_data(self, data) -> None:
        if self._cur is not None:
            self._cur.append(data)


def _glyphs(text: str) -> str:
    """``text`` without whitespace and without what a PDF's text layer does not carry reliably:
    symbols (emoji such as ✅, printed as a box when no font has them), format characters (soft
    hyphens) and combining marks."""
    return "".join(c for c in text if not c.isspace() and unicodedata.category(c) not in ("So", "Cf", "Mn"))


def table_words(html_text: str) -> list[str]:
    """Every distinct word of every table cell of an HTML page, in first-seen order (as
    :func:`_glyphs` keeps it; words that keep nothing are left out)."""
    parser = _Cells()
    parser.feed(html_text)
    parser.close()
    words = (_glyphs(w) for cell in parser.cells for w in cell.split())
    return list(dict.fromkeys(w for w in words if w))


def _wrapped(word: str, first: Word, page: Page) -> bool:
    """``word`` printed as ``first`` followed by pieces on the lines below it in the same cell: each
    piece starts a line (no further right than the piece before, as a wrapped cell's lines do) within
    a line's height below, and continues the word."""
    rest = word[len(_glyphs(first.text)):]
    if not rest:
        return True
    height = first.y_max - first.y_min
    for w in page.words:
        piece = _glyphs(w.text)
        if piece and rest.startswith(piece) and first.y_min + 1 < w.y_min <= first.y_max + 0.6 * height \
                and w.x_min <= first.x_min + 0.5 and _wrapped(rest, w, page):
            return True
    return False


def unprinted(words: list[str], doc: PdfDocument) -> list[str]:
    """The ``words`` (from :func:`table_words`) that the PDF's text does not hold: cut off at the
    page's edge or hidden. A word is printed when it appears in the PDF's words in reading order
    (whitespace ignored), or broken over the lines of its cell (``overflow-wrap: anywhere``; a
    cell's lines may be read between another cell's)."""
    flat = _glyphs("".join(w.text for p in doc.pages for w in p.words))
    missing = []
    for word in words:
        if word in flat:
            continue
        if not any(_glyphs(w.text) and word.startswith(_glyphs(w.text)) and _wrapped(word, w, p)
                   for p in doc.pages for w in p.words):
            missing.append(word)
    return missing


__all__ = ["CHROMIUM_ENV", "CHROMIUM_NAMES", "PdfDocument", "PdfError", "Page", "Word", "find_chromium",
           "print_to_pdf", "read_pdf", "require_chromium", "table_words", "unprinted"]
