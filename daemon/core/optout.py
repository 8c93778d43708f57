"""Opt-outs in inbound messages: a whole message that says STOP (in one of several languages)
or a quick-reply payload listed as an opt-out.

Matching is on the whole message, case-, accent- and punctuation-insensitive: "Stop!",
" stop. ", "ODHLÁSIT", "odhlasit" and "Stopp" match; "stop sending me ads" or "don't stop"
do not (a sentence is a reply for a person to read, not an opt-out to act on blindly).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

DEFAULT_KEYWORDS: Final = (
    "STOP,STOP ALL,STOP PROMOTIONS,UNSUBSCRIBE,OPT OUT,OPTOUT,"
    "ODHLÁSIT,ODHLÁSIT SE,STOPP,ABMELDEN,BAJA,DARSE DE BAJA,"
    "ARRÊT,DÉSABONNER,DÉSINSCRIRE,DISISCRIVITI,WYPISZ,AFMELDEN,СТОП,ОТПИСАТЬСЯ"
)
"""`[optout] keywords` by default (accents optional when matching): English, Czech and Slovak,
German and the Nordic languages, Spanish, French, Italian, Polish, Dutch, Russian. Words that
often mean something else in a reply (CANCEL, END, QUIT) are left out on purpose."""

DEFAULT_PAYLOADS: Final = "STOP,STOP_PROMOTIONS,UNSUBSCRIBE,OPT_OUT"
"""`[optout] payloads` by default: quick-reply button payloads that mean "stop"."""


def normalise(text: str) -> str:
    """Case-, accent- and punctuation-free form of a message: letters and digits, one space
    between words. "¡Baja!" -> "baja", "ODHLÁSIT" -> "odhlasit", "Stop  promotions." ->
    "stop promotions"."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    words: list[str] = []
    word: list[str] = []
    for char in decomposed:
        category = unicodedata.category(char)
        if category.startswith("M"):  # combining accents
            continue
        if category[0] in "LN":
            word.append(char)
        elif word:  # spaces, punctuation, symbols, emoji: word boundaries
            words.append("".join(word))
            word = []
    if word:
        words.append("".join(word))
    return " ".join(words)


def split_list(value: str) -> list[str]:
    """A comma-separated config value as its items (blank ones dropped)."""
    return [item.strip() for item in value.split(",") if item.strip()]


@dataclass(frozen=True)
class OptOutRules:
    """The configured opt-out keywords (normalised) and quick-reply payloads (exact)."""

    keywords: frozenset[str]
    payloads: frozenset[str]

    @classmethod
    def build(cls, keywords: Iterable[str], payloads: Iterable[str]) -> OptOutRules:
        """Rules from the raw keyword and payload lists."""
        return cls(
            frozenset(n for n in (normalise(k) for k in keywords) if n),
            frozenset(p.strip() for p in payloads if p.strip()),
        )

    @classmethod
    def from_config(cls, keywords: str, payloads: str) -> OptOutRules:
        """Rules from the comma-separated `[optout]` values."""
        return cls.build(split_list(keywords), split_list(payloads))

    def text_opts_out(self, text: str | None) -> bool:
        """Whether a text message, as a whole, is an opt-out keyword."""
        if not text or len(text) > 200:  # an essay is not a keyword
            return False
        return normalise(text) in self.keywords

    def payload_opts_out(self, payload: str | None) -> bool:
        """Whether a quick-reply payload is a configured opt-out payload."""
        return payload is not None and payload.strip() in self.payloads

    def opts_out(self, text: str | None, payload: str | None) -> bool:
        """An inbound message is an opt-out by its payload or by its text."""
        return self.payload_opts_out(payload) or self.text_opts_out(text)


DEFAULT_RULES: Final = OptOutRules.from_config(DEFAULT_KEYWORDS, DEFAULT_PAYLOADS)
