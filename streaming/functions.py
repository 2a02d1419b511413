"""Python functions pipelines may call by name (`Map.function`), on every engine.

Pure: each is a plain scalar function of field values (and keyword `params`). They live in an
importable module, not in a job's script, because both engines ship functions to separate Python
workers by reference; a function defined in a test module cannot be loaded there.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Registered:
    """A function a `Map` may name, with the schema type of what it returns."""

    function: Callable[..., Any]
    result_type: str  # one of spec.FIELD_TYPES
    arity: int


_SPACE = re.compile(r"\s+")
# A simple, deterministic tokenizer: runs of letters/digits, and each other non-space character.
_TOKEN = re.compile(r"\w+|[^\w\s]", re.UNICODE)
# `_TOKEN` within ASCII, spelt out: a class of ASCII characters is a bitmap, `\w` a Unicode lookup per
# character. (`re.ASCII` would not do: its `\s` leaves out \x1c-\x1f, which Unicode counts as spaces.)
_ASCII_TOKEN = re.compile(r"[A-Za-z0-9_]+|[^A-Za-z0-9_\s]")

# A few very common function words per language; enough to tell short prompts apart.
_STOPWORDS: dict[str, frozenset[str]] = {
    "en": frozenset(
        [
            "the",
            "and",
            "is",
            "are",
            "of",
            "to",
            "in",
            "that",
            "it",
            "for",
            "with",
            "what",
            "how",
            "you",
            "this",
            "on",
            "be",
            "can",
            "please",
        ]
    ),
    "de": frozenset(
        [
            "der",
            "die",
            "das",
            "und",
            "ist",
            "nicht",
            "ich",
            "sie",
            "es",
            "mit",
            "zu",
            "ein",
            "eine",
            "wie",
            "was",
            "auf",
            "für",
            "bitte",
        ]
    ),
    "fr": frozenset(
        [
            "le",
            "la",
            "les",
            "et",
            "est",
            "une",
            "un",
            "des",
            "que",
            "qui",
            "dans",
            "pour",
            "pas",
            "vous",
            "je",
            "comment",
            "quoi",
        ]
    ),
    "es": frozenset(
        [
            "el",
            "la",
            "los",
            "las",
            "y",
            "es",
            "un",
            "una",
            "que",
            "de",
            "en",
            "por",
            "para",
            "con",
            "qué",
            "cómo",
            "no",
            "se",
        ]
    ),
    "it": frozenset(
        [
            "il",
            "lo",
            "la",
            "gli",
            "le",
            "e",
            "è",
            "un",
            "una",
            "che",
            "di",
            "per",
            "non",
            "con",
            "come",
            "cosa",
            "sono",
        ]
    ),
    "nl": frozenset(
        [
            "de",
            "het",
            "een",
            "en",
            "is",
            "van",
            "niet",
            "dat",
            "ik",
            "je",
            "met",
            "wat",
            "hoe",
            "zijn",
            "voor",
        ]
    ),
    "pt": frozenset(
        ["o", "a", "os", "as", "e", "é", "um", "uma", "que", "de", "em", "para", "com", "não", "como", "você"]
    ),
}
# Unicode script → language, for scripts that name (nearly) one language.
_SCRIPTS = (
    ("HIRAGANA", "ja"),
    ("KATAKANA", "ja"),
    ("HANGUL", "ko"),
    ("CJK", "zh"),
    ("CYRILLIC", "ru"),
    ("ARABIC", "ar"),
    ("HEBREW", "he"),
    ("GREEK", "el"),
    ("DEVANAGARI", "hi"),
    ("THAI", "th"),
)


_LANGUAGES = sorted(_STOPWORDS)
# Each stop word with the languages whose list holds it, so a text's words are looked up once each.
_STOPWORD_LANGUAGES: dict[str, tuple[str, ...]] = {
    word: tuple(lang for lang in _LANGUAGES if word in _STOPWORDS[lang])
    for word in sorted(set().union(*_STOPWORDS.values()))
}
_WORD = re.compile(r"[^\W\d_]+")
_DOTTED_I = "\u0130"
_ASCII_WORD = re.compile(r"[a-z]+")  # `_WORD` within lowered ASCII, where a letter is one of these
# Characters above Latin Extended-B: only these can name a script in `_SCRIPTS`.
_BEYOND_LATIN = re.compile("[^\x00-\u024f]")
_SCRIPT_OF: dict[str, str | None] = {}  # a cache of `_script_language`, bounded


def normalise_text(text: str | None) -> str:
    """Unicode NFKC, control characters dropped, whitespace collapsed, trimmed."""
    if not text:
        return ""
    # Split on whitespace first (str.split() and `\s` split on exactly what str.isspace() accepts): tabs
    # and newlines are the usual unprintable characters, and only a word holding another one needs a
    # per-character pass.
    words = unicodedata.normalize("NFKC", text).split()
    if not all(map(str.isprintable, words)):
        visible = (c if c.isprintable() or c.isspace() else " " for c in " ".join(words))
        words = "".join(visible).split()
    return " ".join(words)


def _script_language(char: str) -> str | None:
    """The language of `char`'s script when that script names (nearly) one language."""
    language = _SCRIPT_OF.get(char, "")
    if language == "":
        name = unicodedata.name(char, "")
        language = next((lang for script, lang in _SCRIPTS if name.startswith(script)), None)
        if len(_SCRIPT_OF) < 65536:
            _SCRIPT_OF[char] = language
    return language


def detect_language(text: str | None) -> str:
    """An ISO 639-1 code from the script (non-Latin) or from stop words (Latin); `und` when unsure."""
    if not text:
        return "und"
    if text.isascii():
        # Nothing beyond Latin, and lowering maps each letter to one letter: the words of the lowered text
        # are the text's words lowered, and within ASCII a letter is a-z.
        words = _ASCII_WORD.findall(text.lower())
    else:
        beyond = _BEYOND_LATIN.findall(text)
        counts: dict[str, int] = {}
        for char in beyond:
            if char.isalpha():
                language = _script_language(char)
                if language is not None:
                    counts[language] = counts.get(language, 0) + 1
        if counts:
            # Japanese mixes kana with CJK ideographs; any kana decides.
            return "ja" if "ja" in counts else max(sorted(counts), key=counts.__getitem__)
        if beyond or _DOTTED_I in text:
            words = [word.lower() for word in _WORD.findall(text)]
        else:
            # Up to Latin Extended-B only İ lowers to more than one character (one of them no letter).
            words = _WORD.findall(text.lower())
    scores: dict[str, int] = {}
    for languages in map(_STOPWORD_LANGUAGES.get, words):
        if languages is not None:
            for language in languages:
                scores[language] = scores.get(language, 0) + 1
    # The highest score wins; a tie goes to the first language in alphabetical order; no stop word: `und`.
    return max(sorted(scores), key=scores.__getitem__) if scores else "und"


def count_tokens(text: str | None) -> int:
    """Word pieces and punctuation marks, the way a simple pre-tokenizer splits them."""
    if not text:
        return 0
    return len((_ASCII_TOKEN if text.isascii() else _TOKEN).findall(text))


def word_count(text: str | None) -> int:
    """Whitespace-separated words; 0 for a missing text."""
    return len(text.split()) if text else 0


def lowercase(text: str | None) -> str | None:
    return text.lower() if text is not None else None


def truncate(text: str | None, *, max_chars: int = 4096) -> str | None:
    return text[:max_chars] if text is not None else None


REGISTRY: dict[str, Registered] = {
    "normalise_text": Registered(normalise_text, "string", 1),
    "detect_language": Registered(detect_language, "string", 1),
    "count_tokens": Registered(count_tokens, "long", 1),
    "word_count": Registered(word_count, "long", 1),
    "lowercase": Registered(lowercase, "string", 1),
    "truncate": Registered(truncate, "string", 1),
}


def registered(name: str) -> Registered:
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(f"no function {name!r} (known: {', '.join(sorted(REGISTRY))})") from None
