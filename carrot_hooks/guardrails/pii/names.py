"""Person names in prose: given and family names from a name gazetteer (spaCy NER confirms the ones
that are also English words), names after (or before) phrases that introduce people, and name-shape checks."""

from __future__ import annotations

import bisect
import functools
import importlib
import pkgutil
import re

import regex
import spacy
from presidio_analyzer import RecognizerResult
from spacy.lang.en.stop_words import STOP_WORDS
from spacy.lookups import Lookups
from threadpoolctl import threadpool_limits

from ..settings import NameIntroducers, pipeline_path

_WORD = re.compile(r"\S+")
_LETTERS = re.compile(r"[^\W\d_]+")
_MC = re.compile(r"^Ma?c(?=[A-Z])")  # McConnan, MacLeod
_NAME_JOINERS = re.compile(r"['\u2019-]")  # O'Brien, Jean-Luc
_POSSESSIVE = re.compile(r"['\u2019]s$")
_SUFFIX = re.compile(r"(?:II|III|IV|Jr\.?|Sr\.?)")
# Words of context kept on each side of a candidate name. 3 was chosen with the gazetteer (same PERSON P/R
# as 5 at 0.7x the NER time; 2 lost precision then); with the name rules added since, 2 gives the same hits
# as 3 on every prose set sentence by sentence (and on those sentences joined into long prose, 4 fewer
# false PERSON, one name lost and one found) at ~0.8x the NER time; 1 adds false PERSON, 2 left / 1 right
# loses a name on held-out-4.
_NER_CONTEXT_WORDS = 2
# spaCy pipes NER does not need (en_core_web_* NER carries its own tok2vec).
_NOT_FOR_NER = ("tok2vec", "tagger", "morphologizer", "parser", "senter", "attribute_ruler", "lemmatizer")
STOP = frozenset(STOP_WORDS | {w.capitalize() for w in STOP_WORDS})
_NAME_TOKEN = regex.compile(r"\p{L}[\p{L}'\u2019-]*")
_TRAILING = ",.;:!?)\"'\u2019"
_MAX_NAME_WORDS = 3
_CONTRACTION = regex.compile(r"['\u2019](?:re|ll|ve|d|m|t|s)$", regex.IGNORECASE)  # you're, we'll


def _is_name_part(part: str, lower_ok: bool = False) -> bool:
    """Maria, Ödön, O, McConnan (or mieszko when `lower_ok`): letters only, one capital at most, first."""
    part = _MC.sub("", part)
    if lower_ok and part.isalpha() and part.islower():
        return True
    return part.isalpha() and part[0].isupper() and (len(part) == 1 or part[1:].islower())


def is_name(value: str, technical: frozenset[str], lower_ok: bool = False) -> bool:
    """True when `value` is shaped like a person's name, not code.

    Every word is a capitalised name part (Maria, O'Brien, Jean-Luc, McConnan), an initial
    (J.), a short lower-case particle between name parts (van, de, ten) or a trailing suffix
    (II, Jr.); no technical term or stop word; identifiers (`self.info`, `getValue`,
    `MAX_SIZE`) never are. `lower_ok` also accepts lower-case words (after "my name is").
    """
    words = value.split()
    if not words or any(w in technical or w.islower() and w in STOP_WORDS for w in words):
        return False
    named = False
    for i, w in enumerate(words):
        if len(w) > 1 and all(_is_name_part(part, lower_ok) for part in _NAME_JOINERS.split(w)):
            named = True
        elif not (
            _is_name_part(w.removesuffix(".")) and len(w.removesuffix(".")) == 1  # initial: J or J.
            or (0 < i < len(words) - 1 and w.isalpha() and w.islower() and len(w) <= 3)  # particle: van, de
            or (i == len(words) - 1 and i > 0 and _SUFFIX.fullmatch(w))
        ):
            return False
    return named


def trim_stop_words(value: str) -> str:
    """`value` without its trailing lower-case stop words ("anthony after her" -> "anthony")."""
    words = value.split(" ")
    while words and words[-1].islower() and words[-1] in STOP_WORDS:
        words.pop()
    return " ".join(words)


class Gazetteer:
    """Given names, family names (lower-cased) and street designators (Loop, Trail, Coves: no family
    names) of every locale of Faker's person and address providers (MIT)."""

    _FIRST = ("first_names", "first_names_male", "first_names_female", "first_names_nonbinary")
    _LAST = ("last_names", "last_names_male", "last_names_female")

    def __init__(self, first: frozenset[str] = frozenset(), last: frozenset[str] = frozenset(),
                 streets: frozenset[str] = frozenset()):
        self.first, self.last, self.streets = first, last, streets

    @classmethod
    @functools.cache
    def load(cls, source: str) -> Gazetteer:
        """The lists of `source` ("faker": the installed Faker package; "none": empty)."""
        if source == "none":
            return cls()
        first = {v.lower() for v in _provider_values("person", cls._FIRST)}
        last = {v.lower() for v in _provider_values("person", cls._LAST)}
        names = first | last
        streets = {v for v in _provider_values("address", ("street_suffixes",))
                   if len(v) > 2 and v.isalpha() and v.istitle() and v.lower() not in names}
        return cls(frozenset(first), frozenset(last), frozenset(streets))


def _provider_values(kind: str, attrs: tuple[str, ...]) -> set[str]:
    """The values of the class attributes `attrs` of Faker's `kind` providers, all locales."""
    out: set[str] = set()
    providers = importlib.import_module(f"faker.providers.{kind}")
    for module in pkgutil.iter_modules(providers.__path__):
        provider = importlib.import_module(f"{providers.__name__}.{module.name}").Provider
        for attr in attrs:
            values = vars(provider).get(attr, ())  # class data only (some are properties)
            if isinstance(values, (dict, list, tuple, set, frozenset)):
                out.update(v for v in values if isinstance(v, str))
    return out


def _name_shape(word: str, technical: frozenset[str]) -> bool | None:
    """True for a capitalised name word or an initial (Isabel, M), False for a lower-case one (eva, m),
    None for no name word."""
    if word[0].isupper() and (len(word) == 1 or _capitalised_name(word, technical)):
        return True
    if word.islower() and (len(word) == 1 or _lower_name(word, technical)):  # most words of prose
        return False
    return None


def _capitalised_name(word: str, technical: frozenset[str]) -> bool:
    return len(word) > 1 and word not in STOP and word not in technical \
        and all(part and _is_name_part(part) for part in _NAME_JOINERS.split(word))


def _lower_name(word: str, technical: frozenset[str]) -> bool:
    return len(word) > 1 and word.islower() and word not in STOP_WORDS and word not in technical \
        and all(part.isalpha() for part in _NAME_JOINERS.split(word))


def name_candidates(prose: str, gazetteer: Gazetteer, english: English, technical: frozenset[str],
                    decided: list[tuple[int, int]] = ()) -> tuple[list[tuple[int, int]], list[tuple[int, int, bool]]]:
    """(names, ambiguous): runs of name-shaped words on one line (initials between them allowed) that
    the gazetteer says are names; the rest of its capitalised words are left to NER.

    A run is a name when a capitalised given name that is no English word starts it (Isabel, Derek
    Okafor), when a listed given name is followed by a listed family name (Grace Becker), or when it
    ends in a listed family name and none of its words is an English word (Chihiro Fukunaga).
    Lower-case, see `_lower_case_names` (ingrid nowak). Listed
    words in no such run (Grace, Mark, Brown, Becker) are ambiguous: NER decides, unless the whole run lies
    in a `decided` span (a name an introducing phrase already found: "Name: Toshimi Arata").
    """
    names: list[tuple[int, int]] = []
    ambiguous: list[tuple[int, int, bool]] = []
    for run in _runs(prose, technical):
        if prose[run[0][0] : run[0][1]].islower():
            names += _lower_case_names(prose, run, gazetteer, english)
            continue
        whole = (run[0][0], run[-1][1])
        while len(run) > 1 and prose[run[1][0] : run[1][1]].lower() in gazetteer.first \
                and prose[run[0][0] : run[0][1]] in english:
            run = run[1:]  # "Mail John Smith", "Ask Mary": the name starts at the given name
        words = [prose[s:e] for s, e in run if e - s > 1]
        if len(words) == 1 and words[0].lower() not in gazetteer.first and words[0].lower() not in gazetteer.last:
            continue  # the common case, decided before the costlier English look-ups
        first = words[0].lower() in gazetteer.first
        known = [w in english for w in words]
        family = len(words) > 1 and words[-1].lower() in gazetteer.last
        if first and (not known[0] or family) or family and not any(known):
            names.append((run[0][0], run[-1][1]))
        elif words[0][0].isupper() and not any(s <= whole[0] and whole[1] <= e for s, e in decided):
            # for NER: listed given names and family names that are no English words; the words of a run of
            # unlisted non-English words (a name NER may know: Irenke Sörös)
            foreign = len(words) > 1 and not any(known)
            ambiguous += [(*span, listed) for span, w, k in zip((r for r in run if r[1] - r[0] > 1), words, known)
                          if (listed := w.lower() in gazetteer.first or w.lower() in gazetteer.last and not k) or foreign]
    return names, ambiguous


def _lower_case_names(prose: str, run: list[tuple[int, int]], gazetteer: Gazetteer,
                      english: English) -> list[tuple[int, int]]:
    """A run of lower-case words is a name when it is one: a listed given name first, a listed family name
    last, no English word ("the fix came from ingrid nowak"). Not a pair inside a longer run: Faker's lists of
    every locale hold everyday words of other languages ("yeni bir hata", "julio duda"); nor a given name
    alone: too many tools, models and words are given names somewhere (claude, meta, bert, esta)."""
    words = [prose[s:e] for s, e in run]
    if len(words) > 1 and words[0] in gazetteer.first and words[-1] in gazetteer.last \
            and not any(w in english for w in words):
        return [(run[0][0], run[-1][1])]
    return []


def _runs(prose: str, technical: frozenset[str]) -> list[list[tuple[int, int]]]:
    """Runs of up to 4 name-shaped words of one case on one line, only spaces (or an initial's dot)
    between them: capitalised (Isabel M. Okafor) or lower-case (eva kleist)."""
    runs: list[list[tuple[int, int]]] = []
    prev_end, prev_upper = -1, False
    for m in _NAME_TOKEN.finditer(prose):
        word = m.group()
        if word.endswith(("'s", "\u2019s")):  # a possessive: "Anna's"
            word = word[:-2]
        s, e = m.start(), m.start() + len(word)
        upper = _name_shape(word, technical)
        if upper is None:
            prev_end = -1
            continue
        initial = e - s == 1 and upper
        gap = prose[prev_end:s] if prev_end >= 0 else "\n"
        joined = gap.strip(" \t") in ("", ".") and "\n" not in gap and (not gap.startswith(".") or runs[-1][-1][1] - runs[-1][-1][0] == 1)
        if joined and upper == prev_upper and len(runs[-1]) < 4:
            runs[-1].append((s, e))
        elif e - s > 1:
            runs.append([(s, e)])
        else:
            prev_end = -1
            continue
        prev_end, prev_upper = (e + 1 if initial and prose[e : e + 1] == "." else e), upper
        if m.end() != e:  # a possessive ends the name
            prev_end = -1
    for run in runs:  # a run ends in a name word, never in an initial
        while run[-1][1] - run[-1][0] == 1:
            run.pop()
    return runs


@functools.cache
def load_spacy(names: tuple[str, ...]) -> tuple[spacy.language.Language | None, str]:
    """The first installed pipeline of `names` with only its NER loaded (once per process), else (None, "none").

    BLAS runs single-threaded from then on: NER multiplies small matrices, where OpenBLAS's thread
    hand-offs cost more CPU than they save (4 KB of prose: 25 -> 22 ms CPU, a third less wall under load).
    """
    threadpool_limits(1, user_api="blas")
    for name in names:
        try:
            return spacy.load(pipeline_path(name) or name, exclude=list(_NOT_FOR_NER)), name
        except OSError:
            continue
    return None, "none"


def candidate_windows(prose: str, anchors: list[tuple[int, int, bool]]) -> list[tuple[int, int]]:
    """Spans of `prose` (within one line) around the `anchors` (sorted spans), merged."""
    spans: list[tuple[int, int]] = []
    pos, k = 0, 0
    for line in prose.split("\n"):
        end = pos + len(line)
        words = [m.span() for m in _WORD.finditer(line)]
        last = -1  # index of the last word already in a window
        for i, (s, e) in enumerate(words):
            if k >= len(anchors) or anchors[k][0] >= pos + e:
                continue
            while k < len(anchors) and anchors[k][0] < pos + e:
                k += 1
            lo, hi = max(0, i - _NER_CONTEXT_WORDS), min(len(words) - 1, i + _NER_CONTEXT_WORDS)
            if last >= 0 and lo <= last + 1:
                spans[-1] = (spans[-1][0], pos + words[hi][1])
            else:
                spans.append((pos + words[lo][0], pos + words[hi][1]))
            last = hi
        pos = end + 1
    return spans


def ner_names(nlp, prose: str, anchors: list[tuple[int, int, bool]], english: English, labels: dict[str, str],
              score: float) -> list[RecognizerResult]:
    """spaCy NER's names holding one of the `anchors` (sorted (start, end, listed)), run on windows around
    them (one doc): holding a listed one, or of two or more words none of them English (Irenke Sörös)."""
    spans = candidate_windows(prose, anchors)
    if not spans:
        return []
    starts, pieces, pos = [], [], 0
    for s, e in spans:
        starts.append(pos)
        pieces.append(prose[s:e])
        pos += e - s + 1
    doc = nlp("\n".join(pieces))
    anchor_starts = [a[0] for a in anchors]
    out = []
    for ent in doc.ents:
        entity = labels.get(ent.label_)
        if entity is None:
            continue
        # an entity never spans windows or lines ("Jamie Pratt\nTalking-books"), nor a possessive 's
        text = _POSSESSIVE.sub("", ent.text.split("\n", 1)[0].rstrip())
        if not text:
            continue
        i = bisect.bisect_right(starts, ent.start_char) - 1
        start = ent.start_char + spans[i][0] - starts[i]
        held = anchors[bisect.bisect_left(anchor_starts, start) : bisect.bisect_right(anchor_starts, start + len(text) - 1)]
        words = text.split()
        listed = [prose[s:e].lower() for s, e, is_listed in held if is_listed]
        if listed and all(w in english.common for w in listed) and (len(words) == 1 or all(w in english for w in words)):
            continue  # a model or product: "Claude", "Claude Code" (its only listed name a common-word one)
        if listed or held and len(words) > 1 and not any(w in english for w in words):
            out.append(RecognizerResult(entity, start, start + len(text), score))
    return out


class English:
    """Is a word English? The WordNet lemma lists, inflection rules and exceptions of the pipeline's own
    lemmatizer tables (empty when the pipeline has none: then no word is known), plus `common`: words of
    developer prose that the lists lack (the policy's `common_word_names`)."""

    def __init__(self, nlp, common: frozenset[str] = frozenset()):
        path = getattr(nlp, "path", None)
        self.common = frozenset(w.lower() for w in common)
        self.words: set[str] = set(self.common)
        self.exceptions: set[str] = set()
        self.rules: set[tuple[str, str]] = set()
        self.adverbs: set[str] = set()
        self.nouns: set[str] = set()
        if path is None or not (path / "lemmatizer" / "lookups" / "lookups.bin").exists():
            return
        tables = Lookups().from_disk(path / "lemmatizer" / "lookups")
        index = tables.get_table("lemma_index")
        for words in index.values():
            self.words.update(words)
        self.adverbs.update(index.get("adv", []))
        self.nouns.update(index.get("noun", []))
        for exceptions in tables.get_table("lemma_exc").values():
            self.exceptions.update(exceptions)
        for rules in tables.get_table("lemma_rules").values():
            self.rules.update((old, new) for old, new in rules if old.isalpha())

    def __contains__(self, word: str) -> bool:
        w = word.lower()
        if "-" in w.strip("-"):  # a compound: "Non-empty", "self-hosted" (not "Jean-Luc", "Smith-Jones")
            parts = word.split("-")
            return not any(p[:1].isupper() for p in parts[1:]) and all(
                p.lower() in _PREFIXES or p and p in self for p in parts)
        return self._listed(w) or any(  # a regular derivation of a listed word ("clickable", "runnable")
            w.endswith(suffix) and len(w) - len(suffix) >= 3 and any(self._listed(base + stem) for base in _bases(
                w[: len(w) - len(suffix)]) for stem in stems) for suffix, stems in _DERIVATIONS)

    def _listed(self, w: str) -> bool:
        return w in self.words or w in self.exceptions or any(
            w.endswith(old) and w[: len(w) - len(old)] + new in self.words for old, new in self.rules)


# English derivational suffixes WordNet leaves out of its lemma lists, with the stem endings they replace:
# click-able, configur(e)-able, run(n)-able, happi(y)-ness are words of a developer's prose, never names.
_DERIVATIONS = (("able", ("", "e")), ("ible", ("", "e")), ("ability", ("", "e")), ("ness", ("", "y")),
                ("less", ("",)), ("ful", ("",)))


# English prefixes written with a hyphen that are no words of their own ("non-empty", "re-run", "pre-built")
_PREFIXES = frozenset(("non", "re", "pre", "co", "multi", "anti", "sub", "semi", "de", "un", "post", "inter", "intra",
                       "pseudo", "quasi", "ex", "mid", "bi", "tri", "auto", "meta", "hyper", "ultra", "self"))


def _bases(stem: str) -> tuple[str, ...]:
    """`stem`, and without its doubled final consonant (runn-able → run)."""
    return (stem, stem[:-1]) if len(stem) > 3 and stem[-1] == stem[-2] and stem[-1] not in "aeiou" else (stem,)


class Introducers:
    """The policy's name-introducing phrases, compiled (see `settings.NameIntroducers`)."""

    def __init__(self, settings: NameIntroducers):
        def one(patterns: tuple[str, ...], tail: str) -> regex.Pattern | None:
            return regex.compile(r"(?<![\p{L}\d_])(?:" + "|".join(patterns) + ")" + tail, regex.IGNORECASE) if patterns else None
        self.any = one(settings.any, r"(?<![\p{L}\d_](?=[\p{L}\d_]))[ \t]*")
        self.confirm = one(settings.confirm, r"(?<![\p{L}\d_](?=[\p{L}\d_]))[ \t]*")
        self.confirm_after = one(settings.confirm_after, r"(?![\p{L}\d_])")


def _name_word(token: str, technical: frozenset[str]) -> bool:
    return bool(_NAME_TOKEN.fullmatch(token)) and token not in STOP and token.lower() not in STOP_WORDS \
        and token not in technical and not _CONTRACTION.search(token)


_NAME_REACH = 120  # characters a name is looked for after or before a phrase
_SPACE = regex.compile(r"\s")


def _words_after(prose: str, pos: int, technical: frozenset[str]) -> list[tuple[int, int]]:
    """Up to 3 name-shaped words from `pos` on one line, up to a stop word or punctuation."""
    out: list[tuple[int, int]] = []
    for m in regex.finditer(r"[^\s]+|\n", prose[pos : pos + _NAME_REACH]):
        token = m.group(0)
        if token == "\n" or len(out) == _MAX_NAME_WORDS:
            break
        core = _POSSESSIVE.sub("", token.rstrip(_TRAILING))
        if not _name_word(core, technical) or token == core + "." and len(core) <= 3 and not out:
            break  # "this is Dr. Kyle": an abbreviation is no name (the honorific introduces the next word)
        out.append((pos + m.start(), pos + m.start() + len(core)))
        if core != token:  # punctuation or a possessive ends the name
            break
        if m.end() < len(prose) - pos and prose[pos + m.end()] not in " \t":
            break
    return out


def _words_before(prose: str, pos: int, technical: frozenset[str]) -> list[tuple[int, int]]:
    """Up to 3 name-shaped words right before `pos` on one line, back to a stop word or punctuation
    (read from at most `_NAME_REACH` characters back, as `_words_after` reads ahead: a long line is not
    re-read for every phrase on it)."""
    line_start = max(prose.rfind("\n", max(0, pos - _NAME_REACH), pos) + 1, pos - _NAME_REACH)
    if line_start > 0 and line_start == pos - _NAME_REACH and not prose[line_start - 1].isspace():
        space = _SPACE.search(prose, line_start, pos)  # the window starts mid-word: skip that word
        line_start = space.end() if space else pos
    out: list[tuple[int, int]] = []
    for m in reversed(list(regex.finditer(r"\S+", prose[line_start:pos]))):
        token = m.group(0)
        if len(out) == _MAX_NAME_WORDS or not _name_word(token, technical):
            break
        out.insert(0, (line_start + m.start(), line_start + m.end()))
    return out


def introduced(prose: str, intro: Introducers, english: English, technical: frozenset[str],
               gazetteer: Gazetteer) -> list[tuple[int, int]]:
    """Spans of words that a phrase introduces as a person's name.

    After an `any` phrase the first word counts in any case (unless a stop word or technical term),
    and so does each next one that is capitalised or no English word. After a `confirm` phrase (or
    before a `confirm_after` one, whose word right before it is no lower-case English word other than a listed
    name: "the sqlite fixture needs", not "anna smith needs") the words count when one of them is no English word or a
    capitalised given name of the gazetteer ("thanks, ngozi", "call me Grace", "anthony moreau said",
    not "cheers, works now", "thanks, will do").
    """
    out = []
    lines = _text_lines(prose)
    for confirm, pattern in ((False, intro.any), (True, intro.confirm)):
        for m in (m for s, e in lines for m in pattern.finditer(prose, s, e)) if pattern else ():
            words = _words_after(prose, m.end(), technical)
            if confirm:
                words = _unknown_words(prose, words, english, gazetteer)
            else:  # "my name is anna please help": the name ends at a lower-case English word
                if len(words) == 1 and _lower_english(w := prose[slice(*words[0])], english, gazetteer) \
                        and w not in english.nouns:
                    continue  # "only the name is known": a word, not a name (a noun may be one: "mei", "mark")
                keep = min(1, len(words))
                while keep < len(words) and not (prose[words[keep][0]].islower() and prose[slice(*words[keep])] in english):
                    keep += 1
                words = words[:keep]
            if words:
                out.append((words[0][0], words[-1][1]))
    for m in (m for s, e in lines for m in intro.confirm_after.finditer(prose, s, e)) if intro.confirm_after else ():
        words = _words_before(prose, m.start(), technical)
        while len(words) > 1 and prose[slice(*words[-1])] in english.adverbs:  # "Tanaka later said"
            words = words[:-1]
        last = prose[slice(*words[-1])] if words else ""
        prev = prose[slice(*words[-2])].lower() if len(words) > 1 else ""
        if _lower_english(last, english, gazetteer) and prev not in gazetteer.first:
            continue  # the verb's subject is a thing: "the sqlite fixture needs", "tokenizer quirks here"
        words = _unknown_words(prose, words, english, gazetteer)
        if words:
            out.append((words[0][0], words[-1][1]))
    return out


def _text_lines(prose: str) -> list[tuple[int, int]]:
    """(start, end) of each line of `prose` holding text, its newline included: the blanked code of a
    coding prompt is long runs of spaces, where every position would be tried by every phrase."""
    out, start = [], 0
    for line in prose.split("\n"):
        end = start + len(line) + 1
        if line.strip():
            out.append((start, min(end, len(prose))))
        start = end
    return out


def _lower_english(word: str, english: English, gazetteer: Gazetteer) -> bool:
    """A lower-case English word that is no listed given or family name ("known", "fixture"; not "mark")."""
    return word.islower() and word in english and word not in gazetteer.first and word not in gazetteer.last


def _unknown_words(prose: str, words: list[tuple[int, int]], english: English,
                   gazetteer: Gazetteer) -> list[tuple[int, int]]:
    """`words` when at least one is no English word or a capitalised given name ("anthony moreau",
    "Grace", not "works now", "will do", nor an assistant's name alone: "thanks, Claude"), up to the last such."""
    unknown = [i for i, (s, e) in enumerate(words) if prose[s:e] not in english
               or prose[s].isupper() and (w := prose[s:e].lower()) in gazetteer.first and w not in english.common]
    return words[: unknown[-1] + 1] if unknown else []
