"""The words a student types to steer a lesson, and how a message is read as one.

It lives below both the dialog (``app.chat``, which runs the commands) and the lesson
validator (which refuses accepted answers that would be read as a command), so that
the two can never disagree about what a command is.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

COMMANDS: dict[str, str] = {
    "help": "help", "помощь": "help", "справка": "help", "?": "help",
    "lessons": "lessons", "уроки": "lessons",
    "start": "start", "начать": "start", "старт": "start",
    "check": "check", "проверить": "check", "проверь": "check", "проверка": "check",
    "hint": "hint", "подсказка": "hint",
    "status": "status", "статус": "status",
    "stop": "stop", "стоп": "stop",
    "restart": "restart", "заново": "restart", "рестарт": "restart",
    "lang": "lang", "язык": "lang", "language": "lang",
    "link": "link", "связать": "link",
}
TAKES_ARGUMENT = {"start", "lang", "link"}
_FINAL_PUNCTUATION = "!?.,;:…¡¿。！？"


@dataclass(frozen=True)
class Command:
    name: str
    argument: str = ""


def strip_format_characters(text: str) -> str:
    """Drop invisible Unicode format characters (category Cf: ZWSP, BOM, LRM/RLM, RLO, LRI, soft hyphen, …).

    They arrive from copy-paste and bidirectional keyboards, carry no meaning in a
    command or an answer, and would otherwise make ``\\ufeffstop`` a different word.
    """
    return "".join(char for char in text if unicodedata.category(char) != "Cf")


def normalize_text(text: str) -> str:
    """Compatibility-normalised (NFKC), case-folded text without format characters or extra spaces."""
    folded = unicodedata.normalize("NFKC", strip_format_characters(text)).casefold()
    # NFKC after casefold as well: casefolding can produce sequences NFKC composes differently.
    return re.sub(r"\s+", " ", unicodedata.normalize("NFKC", folded)).strip()


def normalize_word(word: str) -> str:
    """A command word or lesson id as compared: normalised, without final punctuation (``help?``, ``git-basics!``).

    A word made only of punctuation keeps its first mark (``?!`` is ``?``, itself a command).
    """
    text = normalize_text(word)
    return text.rstrip(_FINAL_PUNCTUATION) or text[:1]


def parse(text: str) -> Command | None:
    """A command is the whole message: one word, or start/lang/link with one argument (normalised too).

    `link github <login>` is the one command of three words.
    """
    words = normalize_text(text).split()
    if not words or len(words) > 3:
        return None
    name = COMMANDS.get(normalize_word(words[0]))
    if name is None:
        return None
    if len(words) == 3:
        return Command(name, f"github {words[2]}") if name == "link" and normalize_word(words[1]) == "github" else None
    if name in TAKES_ARGUMENT:
        return Command(name, normalize_word(words[1]) if len(words) == 2 else "")
    return Command(name) if len(words) == 1 else None
