"""Doc chunks along the document's structure (Markdown, reStructuredText, HTML; detected in any file, `.txt`
included): sections grouped into parents of 800-1200 tokens, each split into passages of about 200 tokens
that are matched while the model is handed the whole parent. Headings read `Title > Section > Sub`."""

from __future__ import annotations

import bisect
import itertools
import re
from dataclasses import dataclass, replace
from html.parser import HTMLParser

from .chunk import Chunk

MIN_TOKENS, MAX_TOKENS = 800, 1200  # parents: what the model is handed
SECTION_MAX_TOKENS = 1600  # ...or the passage's whole section with its subsections, when a window would cut it
# a parent grows to at most this many characters (within the default `max_chunk_chars`, 8,000: never cut where
# it is injected; a passage longer than this alone is its own parent)
PARENT_MAX_CHARS = 7500
PASSAGE_TOKENS = 200  # passages: what is matched (cut at a blank line past this, or at a section start)
MIN_PASSAGE_TOKENS = 40  # a section start shorter than this (a lone heading) stays with what follows
DOC_EXTENSIONS = {".md": "markdown", ".markdown": "markdown", ".rst": "rst", ".html": "html", ".htm": "html", ".txt": "text"}
_TOKEN = re.compile(r"\w+|[^\w\s]")
_MD_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")
_RST_UNDERLINE = re.compile(r"^([=\-`:'\"~^_*+#<>])\1{2,}\s*$")
_MD_SIGNAL = re.compile(r"^\s*(```|~~~|[-*+] |\d+\. |> )|\[[^\]]+\]\([^)]+\)|`[^`]+`")
_HTML_START = re.compile(r"^\s*(<!doctype html|<html\b)", re.IGNORECASE)


def count_tokens(text: str) -> int:
    """Word-piece-like token estimate (words and punctuation marks); no tokenizer download needed."""
    return len(_TOKEN.findall(text))


@dataclass
class _Section:
    heading: str  # "Title > Sub > Subsub"
    start: int  # 1-based first line
    lines: list[str]
    end: int = 0  # last source line when it differs from start + len(lines) - 1 (HTML)
    level: int = 0  # the heading's own level (1 = `#`); 0: no heading (a preamble)


def _markdown_sections(lines: list[str]) -> list[_Section]:
    sections, trail, fenced = [_Section("", 1, [])], [], False
    for no, line in enumerate(lines, 1):
        if _FENCE.match(line):
            fenced = not fenced
        m = None if fenced else _MD_HEADING.match(line)
        setext = (not fenced and no < len(lines) and line.strip() and re.match(r"^(=+|-+)\s*$", lines[no])
                  and not _MD_HEADING.match(line) and not line.lstrip().startswith(("|", "-", "*")))
        if m or setext:
            level, title = (len(m[1]), m[2]) if m else (1 if lines[no].startswith("=") else 2, line.strip())
            trail = [(lv, t) for lv, t in trail if lv < level] + [(level, title.strip())]  # levels may skip
            sections.append(_Section(" > ".join(t for _, t in trail), no, [], level=level))
        sections[-1].lines.append(line)
    return sections


def _rst_sections(lines: list[str]) -> list[_Section]:
    sections, levels, trail = [_Section("", 1, [])], [], []
    skip_to = 0
    for no, line in enumerate(lines, 1):
        if no <= skip_to:
            sections[-1].lines.append(line)
            continue
        nxt = lines[no] if no < len(lines) else ""
        m = _RST_UNDERLINE.match(nxt)
        if line.strip() and not _RST_UNDERLINE.match(line) and m and len(nxt.rstrip()) >= len(line.rstrip()):
            char = m[1]
            if char not in levels:
                levels.append(char)
            level = levels.index(char) + 1
            trail = trail[: level - 1] + [line.strip()]
            start = no
            if sections[-1].lines and _RST_UNDERLINE.match(sections[-1].lines[-1]):  # overline
                sections[-1].lines.pop()
                start = no - 1
            sections.append(_Section(" > ".join(trail), start, lines[start - 1 : no - 1], level=level))
            skip_to = no + 1
        sections[-1].lines.append(line)
    return sections


class _HtmlText(HTMLParser):
    """HTML → (source line, text) pieces with headings marked, skipping script/style."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.pieces: list[tuple[int, str, int]] = []  # (line, text, heading level or 0)
        self._level, self._skip = 0, 0

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style"):
            self._skip += 1
        elif re.fullmatch(r"h[1-6]", tag):
            self._level = int(tag[1])

    def handle_endtag(self, tag):
        if tag in ("script", "style"):
            self._skip = max(0, self._skip - 1)
        elif re.fullmatch(r"h[1-6]", tag):
            self._level = 0

    def handle_data(self, data):
        if not self._skip and data.strip():
            self.pieces.append((self.getpos()[0], " ".join(data.split()), self._level))


def _html_sections(text: str) -> list[_Section]:
    parser = _HtmlText()
    parser.feed(text)
    sections, trail = [_Section("", 1, [])], []
    for line, piece, level in parser.pieces:
        if level:
            trail = trail[: level - 1] + [piece]
            sections.append(_Section(" > ".join(trail), line, []))
        sections[-1].lines.append(piece)
        sections[-1].end = line
    return sections


def _split_long(sec: _Section) -> list[_Section]:
    """Split a section over MAX_TOKENS at blank lines (or anywhere, as a last resort)."""
    out, cur, cur_start, tokens = [], [], sec.start, 0
    for i, line in enumerate(sec.lines):
        n = count_tokens(line)
        if cur and tokens + n > MAX_TOKENS and (not line.strip() or tokens >= MAX_TOKENS):
            out.append(_Section(sec.heading, cur_start, cur, sec.end and cur_start))
            cur, cur_start, tokens = [], sec.start + i, 0
        cur.append(line)
        tokens += n
    if cur:
        out.append(_Section(sec.heading, cur_start, cur, sec.end))
    return out


def doc_format(path: str, text: str) -> str:
    """markdown | rst | html | text: by extension, and for `.txt` and unknown ones by the text's structure."""
    kind = DOC_EXTENSIONS.get("." + path.rsplit(".", 1)[-1].lower(), "text")
    if kind != "text":
        return kind
    if _HTML_START.match(text[:500]):
        return "html"
    lines = text.splitlines()
    fenced, atx = False, 0
    for line in lines:
        if _FENCE.match(line):
            fenced = not fenced
        elif not fenced and _MD_HEADING.match(line):
            atx += 1
    if atx >= 2 or (atx == 1 and sum(bool(_MD_SIGNAL.search(line)) for line in lines) >= 2):
        return "markdown"
    if sum(1 for s in _rst_sections(lines) if s.heading) >= 2:
        return "rst"
    return "text"


def _title(path: str, sections: list[_Section]) -> str:
    """The document's own title: its first top-level heading, else the file name in words."""
    for s in sections:
        if s.heading:
            return s.heading.split(" > ")[0]
    stem = path.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    return re.sub(r"[_-]+", " ", stem).strip() or stem


def _passages(group: list[_Section]) -> list[tuple[int, list[str], str]]:
    """(first line, lines, heading) of the passages of a parent: cut at a section start (once the passage
    has MIN_PASSAGE_TOKENS) or at a blank line past PASSAGE_TOKENS; HTML sections stay whole."""
    out: list[tuple[int, list[str], str]] = []
    cur: list[str] = []
    start, heading, tokens = group[0].start, group[0].heading, 0
    for sec in group:
        if cur and tokens >= MIN_PASSAGE_TOKENS:
            out.append((start, cur, heading))
            cur, start, heading, tokens = [], sec.start, sec.heading, 0
        heading = sec.heading or heading  # a lone heading kept with what follows: the inner one names it
        for i, line in enumerate(sec.lines):
            if cur and not sec.end and not line.strip() and tokens >= PASSAGE_TOKENS:
                out.append((start, cur, heading))
                cur, start, heading, tokens = [], sec.start + i, sec.heading, 0
            if not cur and not line.strip():
                start += 1  # a passage starts at its first non-blank line
                continue
            cur.append(line)
            tokens += count_tokens(line)
    if cur:
        out.append((start, cur, heading))
    return out


def _section_spans(sections: list[_Section]) -> list[tuple[int, int, int]]:
    """(first line, last line, tokens) of every headed section with its subsections (a later heading of the
    same or a higher level closes it)."""
    spans: list[tuple[int, int, int]] = []
    open_: list[tuple[int, int, int]] = []  # (level, first line, tokens before it)
    tokens = last = 0
    for s in sections:
        depth = s.level
        while depth and open_ and open_[-1][0] >= depth:
            _, first, before = open_.pop()
            spans.append((first, last, tokens - before))
        if depth:
            open_.append((depth, s.start, tokens))
        tokens += count_tokens("\n".join(s.lines))
        last = s.end or s.start + len(s.lines) - 1
    spans += [(first, last, tokens - before) for _, first, before in open_]
    return spans


def _around(chunks: list[Chunk], lines: list[str], spans: list[tuple[int, int, int]]) -> list[Chunk]:
    """Each passage's parent: the passages of its largest section within SECTION_MAX_TOKENS and
    PARENT_MAX_CHARS (else the passage alone) and their neighbours, added below and above in turn while the
    whole stays within MAX_TOKENS and PARENT_MAX_CHARS (overlapping windows, so an answer that starts one
    passage earlier or ends one later is still handed over whole, and a section that fits is never cut in two)."""
    sizes = [count_tokens(c.text) for c in chunks]
    starts = [c.start_line for c in chunks]
    ends = list(itertools.accumulate((len(line) + 1 for line in lines), initial=0))  # text offset of each line

    def span_chars(lo: int, hi: int) -> int:
        return ends[chunks[hi].end_line] - ends[chunks[lo].start_line - 1] - 1

    sections: list[tuple[int, int] | None] = [None] * len(chunks)  # (first, last passage) of the section
    for first, last, tokens in sorted(spans, key=lambda sp: sp[2]):  # larger last: a passage keeps its largest
        if tokens > SECTION_MAX_TOKENS:
            continue
        # its passages: from the one holding its first line (which may begin with a lone heading above it) to
        # the last one starting inside it; handed whole only within both limits
        lo = max(0, bisect.bisect_right(starts, first) - 1)
        lo += chunks[lo].end_line < first
        hi = bisect.bisect_right(starts, last) - 1
        if hi < lo or sum(sizes[lo : hi + 1]) > SECTION_MAX_TOKENS or span_chars(lo, hi) > PARENT_MAX_CHARS:
            continue
        sections[lo : hi + 1] = [(lo, hi)] * (hi + 1 - lo)
    out = []
    for i, (c, section) in enumerate(zip(chunks, sections)):
        lo, hi = section or (i, i)
        total = sum(sizes[lo : hi + 1])
        limit = max(MAX_TOKENS, total)
        grew = True
        while grew:
            grew = False
            for j in (hi + 1, lo - 1):
                if 0 <= j < len(chunks) and (j > hi or j < lo) and total + sizes[j] <= limit \
                        and span_chars(min(lo, j), max(hi, j)) <= PARENT_MAX_CHARS:
                    lo, hi, total, grew = min(lo, j), max(hi, j), total + sizes[j], True
        start, end = chunks[lo].start_line, chunks[hi].end_line
        out.append(replace(c, parent=(start, end, "\n".join(lines[start - 1 : end]))))
    return out


def chunk_doc(path: str, text: str) -> list[Chunk]:
    """Passages of about PASSAGE_TOKENS, each with its section (up to SECTION_MAX_TOKENS) and the neighbourhood
    of at most MAX_TOKENS around it as its parent (HTML: whole sections grouped to 800-1200 tokens, as source
    lines do not map to text there)."""
    kind = doc_format(path, text)
    lines = text.splitlines()
    if kind == "markdown":
        sections = _markdown_sections(lines)
    elif kind == "rst":
        sections = _rst_sections(lines)
    elif kind == "html":
        sections = _html_sections(text)
    else:
        sections = [_Section("", 1, lines)]
    title = _title(path, sections)

    def titled(heading: str) -> str:
        return heading if heading.split(" > ")[0] == title else " > ".join(x for x in (title, heading) if x)

    pieces = [p for s in sections if s.lines for p in _split_long(s)]
    chunks, group = [], []

    def flush():
        if group and any(line.strip() for p in group for line in p.lines):
            start = group[0].start
            end = group[-1].end or group[-1].start + len(group[-1].lines) - 1
            body_lines = [line for p in group for line in p.lines]
            while body_lines and not body_lines[-1].strip() and not group[-1].end:  # trailing blank lines
                body_lines.pop()
                end -= 1
            parent = (start, end, "\n".join(body_lines))
            for p_start, p_lines, heading in _passages(group):
                while p_lines and not p_lines[-1].strip():
                    p_lines = p_lines[:-1]
                p_end = min(end, p_start + len(p_lines) - 1) if not group[-1].end else max(p_start, end)
                chunks.append(Chunk(path, p_start, p_end, "\n".join(p_lines), kind, "", titled(heading), parent=parent))
        group.clear()

    tokens = 0
    for piece in pieces:
        n = count_tokens("\n".join(piece.lines))
        if group and tokens + n > MAX_TOKENS and tokens >= MIN_TOKENS // 2:
            flush()
            tokens = 0
        group.append(piece)
        tokens += n
        if tokens >= MIN_TOKENS:
            flush()
            tokens = 0
    flush()
    return chunks if kind == "html" else _around(chunks, lines, _section_spans(sections))
