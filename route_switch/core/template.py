"""Template-aware view: route on what differs between queries, not on the template they share.

Real prompts are mostly template: a fixed system prompt, few-shot exemplars, a chat wrapper, and
a short part that differs. :class:`TemplateView` learns at ``fit`` which *segments* recur across
many training prompts and, when reading a query, replaces each of them by ``weight`` short marker
tokens (``zztpl<i>``, ``zztpl<i>x1``, ...; ``i`` the segment's index). The encoder then sees the part
that differs word for word, plus a few tokens per shared segment, which keeps what the template says
about the query (its task: the exemplars of a maths prompt are not those of a trivia prompt) at the
weight of a few words instead of hundreds of n-grams. ``weight`` 3 was measured best among 1, 3
and 8 on the templated ``dcrouter-3tier`` (docs/results.md, "Templates").

Segments are paragraphs (text between blank lines: an exemplar with its short code lines, a system
prompt), else lines; a line longer than ``SENTENCE_SPLIT_CHARS`` that is not itself shared is also
looked at sentence by sentence (a one-paragraph system prompt followed by the question). A
segment is shared when, after case folding and whitespace collapsing, it has at least
``MIN_SEGMENT_CHARS`` characters and occurs in at least ``max(min_count, min_share · n)`` of the
``n`` training prompts.

Guarantees (tested):
* a query with no shared segment is returned unchanged (the same ``str``);
* a query that is *only* shared segments is returned unchanged too (nothing would remain to read),
  so a short, single-line query is never changed;
* the markers come first, on one line (the order of the shared segments found, at most
  ``MAX_MARKERS``), then the rest of the text: the encoder's head+tail cut applies to the rest
  only, so markers never push the question out of the view;
* the view is deterministic and idempotent (markers are never shared segments, and an already
  viewed text keeps its markers line, :func:`marker_prefix`), and depends only on the saved
  segment list and weight: a loaded estimator reads queries exactly as the fitted one did.

Saved in the estimator's ``arrays.npz`` as ``encoder.template`` (one newline-joined string, like
the vocabulary) and validated on load (:func:`check_segments`). The segments are text of your
training prompts: keep fitted estimators with your data.
"""
from __future__ import annotations

import re
from collections import Counter

import numpy as np

MIN_SEGMENT_CHARS = 24
SENTENCE_SPLIT_CHARS = 160
MAX_SEGMENTS = 20_000
MAX_SEGMENT_CHARS = 20_000
MARKER = "zztpl"
MAX_WEIGHT = 8        # marker tokens per shared segment, at most
MAX_MARKERS = 8       # default: shared segments named in one query's markers line (the first ones)
MAX_MARKER_LINE = 64 * MAX_WEIGHT * 16
_SENTENCE = re.compile(r"(?<=[.!?])\s+")


def _key(segment: str) -> str:
    return " ".join(segment.split()).lower()


def _sentences(line: str) -> list[str]:
    return _SENTENCE.split(line) if len(line) > SENTENCE_SPLIT_CHARS else []


def _segment_keys(text: str) -> set[str]:
    keys = set()
    for para in text.split("\n\n"):  # paragraphs: an exemplar with its short lines, a system prompt
        if "\n" in para:
            k = _key(para)
            if len(k) >= MIN_SEGMENT_CHARS:
                keys.add(k)
    for line in text.split("\n"):
        k = _key(line)
        if len(k) < MIN_SEGMENT_CHARS:
            continue
        keys.add(k)
        for s in _sentences(line):
            ks = _key(s)
            if len(ks) >= MIN_SEGMENT_CHARS and ks != k:
                keys.add(ks)
    return keys


class TemplateView:
    """Learned shared segments of the training prompts; ``apply(text)`` is the view (module docstring)."""

    def __init__(self, segments: list[str] | None = None, weight: int = 3, markers: int = MAX_MARKERS):
        self.segments_ = list(segments or [])
        self.weight = min(max(1, int(weight)), MAX_WEIGHT)
        self.markers = min(max(1, int(markers)), 64)
        self.index_ = {s: i for i, s in enumerate(self.segments_)}
        self._firsts = frozenset(s.split(" ", 1)[0] for s in self.segments_)  # their first words
        self._markers = [" ".join([f"{MARKER}{i}"] + [f"{MARKER}{i}x{c}" for c in range(1, self.weight)])
                         for i in range(len(self.segments_))]
        self.silent_: frozenset[int] = frozenset()

    def __len__(self) -> int:
        return len(self.segments_)

    @classmethod
    def fit(cls, prompts, min_count: int = 10, min_share: float = 0.005, weight: int = 3,
            markers: int = MAX_MARKERS) -> "TemplateView":
        """Segments occurring in at least ``max(min_count, min_share · n)`` prompts, most frequent first."""
        prompts = list(prompts)
        df: Counter = Counter()
        for p in prompts:
            df.update(_segment_keys(p))
        need = max(min_count, int(np.ceil(min_share * len(prompts))))
        shared = [(c, s) for s, c in df.items() if c >= need and MARKER not in s and len(s) <= MAX_SEGMENT_CHARS]
        shared.sort(key=lambda cs: (-cs[0], cs[1]))
        tv = cls([s for _, s in shared[:MAX_SEGMENTS]], weight, markers)
        # In more than half the prompts (a fixed system prompt, a chat wrapper): says nothing about
        # the query, so it is removed but not named.
        tv.silent_ = frozenset(i for i, (c, _) in enumerate(shared[:MAX_SEGMENTS]) if c > len(prompts) / 2)
        return tv

    def _index(self, text: str) -> int | None:
        """The index of the shared segment ``text`` is (after case folding and whitespace collapsing), or None."""
        return None if self._unshared(text) else self.index_.get(_key(text))

    def _unshared(self, text: str) -> bool:
        """True when ``text`` is ASCII and its first word starts no shared segment: its key (the
        first word lower-cased, then the rest) cannot be one. Cheaper than computing the key."""
        if not text.isascii():
            return False
        words = text.split(None, 1)
        return not words or words[0].lower() not in self._firsts

    def _line(self, line: str, seen: dict) -> str | None:
        """The line as read (None: the whole line is shared); ``seen`` collects the shared segments."""
        if len(line) < MIN_SEGMENT_CHARS:  # the key is never longer than the line
            return line
        if len(line) <= SENTENCE_SPLIT_CHARS and self._unshared(line):
            return line  # (ASCII: its key is no longer than the line, so it is not read by sentences)
        k = _key(line)
        i = self.index_.get(k)
        if i is not None:
            seen.setdefault(i)
            return None
        if len(k) <= SENTENCE_SPLIT_CHARS:
            return line
        parts = _sentences(line)
        if len(parts) < 2:
            return line
        rest = []
        for sent in parts:
            j = self._index(sent)
            if j is None:
                rest.append(sent)
            else:
                seen.setdefault(j)
        return " ".join(rest) if len(rest) < len(parts) else line

    def _unit(self, para: str, seen: dict) -> str | None:
        """A paragraph as read (None: all of it is shared): whole, else line by line."""
        if "\n" not in para:
            return self._line(para, seen)
        if len(para) >= MIN_SEGMENT_CHARS:
            i = self._index(para)
            if i is not None:
                seen.setdefault(i)
                return None
        lines = [x for x in (self._line(line, seen) for line in para.split("\n")) if x is not None]
        return "\n".join(lines) if lines else None

    def split(self, text: str, budget: int = 0) -> tuple[str, str] | None:
        """``(markers, rest)``: one line with the markers of the shared segments found (the first
        ``MAX_MARKERS`` that are not silent, in order of appearance, then ``"\n"``; ``""`` when all
        are silent) and the text without them. None when no segment, or every segment, is shared.

        Segments are paragraphs (between blank lines) when a whole paragraph is shared, else lines
        (and sentences of long lines). ``budget`` (the encoder's ``max_chars``; 0: read everything):
        paragraphs are read from the start until 3/4 of it is filled with text that is not shared,
        and from the end until the other 1/4 is; those between are kept as they are (the head+tail
        cut drops them), so a 20,000-character prompt costs about what its head and tail cost."""
        if not self.index_ or len(text) < MIN_SEGMENT_CHARS:
            return None
        lines = text.split("\n\n")
        seen: dict[int, None] = {}
        head: list[str] = []
        tail: list[str] = []
        h_need = budget - budget // 4 + 1 if budget else float("inf")
        t_need = budget // 4 + 1 if budget else float("inf")
        got = 0
        i = 0
        while i < len(lines) and got < h_need:
            line = self._unit(lines[i], seen)
            if line is not None:
                head.append(line)
                got += len(line) + 1
            i += 1
        j, got_t = len(lines), 0
        while j > i and got_t < t_need:
            j -= 1
            line = self._unit(lines[j], seen)
            if line is not None:
                tail.append(line)
                got_t += len(line) + 1
        if not seen or not any(x.strip() for x in head + tail + lines[i:j]):
            return None
        rest = "\n\n".join(head + lines[i:j] + tail[::-1])
        named = [x for x in seen if x not in self.silent_][:self.markers]
        return (" ".join(self._markers[x] for x in named) + "\n" if named else ""), rest

    def apply(self, text: str) -> str:
        """``text`` read through the view: its markers line, then the rest (``text`` itself when unchanged)."""
        res = self.split(text)
        return text if res is None else res[0] + res[1]


    # ---------------------------------------------------------------- persistence
    def to_arrays(self) -> dict[str, np.ndarray]:
        return {"template": np.array("\n".join(self.segments_)),
                "template_silent": np.array(sorted(self.silent_), np.int32)}

    @classmethod
    def from_arrays(cls, arrays, weight: int = 3, markers: int = MAX_MARKERS) -> "TemplateView":
        tv = cls(check_segments(arrays["template"]), weight, markers)
        tv.silent_ = frozenset(check_silent(arrays["template_silent"], len(tv)))
        return tv


_MARKER_LINE = re.compile(rf"{MARKER}\d+(?:x\d+)?(?: {MARKER}\d+(?:x\d+)?)*")


def marker_prefix(text: str) -> tuple[str, str]:
    """Split an already-viewed text into its markers line and the rest (``("", text)`` if it has none)."""
    if not text.startswith(MARKER):
        return "", text
    first, sep, rest = text.partition("\n")
    if sep and len(first) <= MAX_MARKER_LINE and _MARKER_LINE.fullmatch(first):
        return first + "\n", rest
    return "", text


def check_silent(a, n: int) -> list[int]:
    """The silent segment indices stored in ``a``; ValueError unless distinct integers in 0..n-1."""
    a = np.asarray(a)
    if a.ndim != 1 or a.dtype.kind not in "iu" or (a.size and (a.min() < 0 or a.max() >= n)) \
            or len(np.unique(a)) != len(a):
        raise ValueError(f"template_silent must be distinct integers in 0..{n - 1}")
    return [int(x) for x in a]


def check_segments(a) -> list[str]:
    """The segment list stored in ``a`` (a 0-d string array); ValueError naming what is wrong."""
    a = np.asarray(a)
    if a.dtype.kind != "U" or a.shape != ():
        raise ValueError(f"template must be one string (0-d unicode array), got dtype {a.dtype} shape {a.shape}")
    text = str(a)
    segs = text.split("\n") if text else []
    if len(segs) > MAX_SEGMENTS:
        raise ValueError(f"template has {len(segs)} segments, more than {MAX_SEGMENTS}")
    for i, s in enumerate(segs):
        if len(s) < MIN_SEGMENT_CHARS or len(s) > MAX_SEGMENT_CHARS or s != _key(s) or MARKER in s:
            raise ValueError(f"template segment {i} is not a normalised segment of "
                             f"{MIN_SEGMENT_CHARS}..{MAX_SEGMENT_CHARS} characters")
    if len(set(segs)) != len(segs):
        raise ValueError("template has duplicate segments")
    return segs


def clip_query(query: str, max_chars: int) -> str:
    """Keep head (3/4) and tail (1/4) of an over-long query."""
    if len(query) <= max_chars:
        return query
    head = max_chars * 3 // 4
    return query[:head] + "\n...\n" + query[-(max_chars - head):]
