"""The dialog as a table of messages and answers; the student state lives in the database."""

from __future__ import annotations

import re
import string

import pytest
from flask.testing import FlaskClient

from app import create_app
from app.chat.dialog import Command, parse, strip_mention
from app.chat.markdown import quote_inline
from app.db import db
from app.i18n import LANGUAGES, MESSAGES
from tests.conftest import make_settings
from tests.helpers import ChatStudent


@pytest.mark.parametrize(("text", "command"), [
    ("help", Command("help")),
    ("HELP", Command("help")),
    ("помощь", Command("help")),
    ("start git-basics", Command("start", "git-basics")),
    ("начать git-basics", Command("start", "git-basics")),
    ("start", Command("start", "")),
    ("stop", Command("stop")),
    ("Стоп!", Command("stop")),
    ("lang en", Command("lang", "en")),
    ("link", Command("link", "")),
    ("link github Octo-Cat", Command("link", "github octo-cat")),
    ("связать GitHub octocat", Command("link", "github octocat")),
    ("link gitlab octocat", None),
    ("start github basics", None),
    ("please stop the music", None),
    ("stop it now", None),
    ("start the lesson now please", None),
    ("hello", None),
    ("", None),
])
def test_parse_takes_whole_messages_only(text: str, command: Command | None) -> None:
    assert parse(text) == command


def test_strip_mention_of_the_bot() -> None:
    assert strip_mention("@**Lessonbot** start git-basics") == "start git-basics"
    assert strip_mention("no mention") == "no mention"


def test_every_message_exists_in_both_languages_with_the_same_placeholders() -> None:
    formatter = string.Formatter()
    for key, texts in MESSAGES.items():
        assert set(texts) == set(LANGUAGES), key
        fields = [{name for _, name, _, _ in formatter.parse(texts[lang]) if name} for lang in LANGUAGES]
        assert fields[0] == fields[1], key
        assert not re.search(r"[а-яА-Я]", texts["en"]), key


def test_russian_is_the_default_and_lang_switches(client: FlaskClient, tmp_path) -> None:  # type: ignore[no-untyped-def]
    student = ChatStudent(client, "ru@example.com", tmp_path)
    # The app fixture's default language is English; a Russian command still works.
    assert "Команды" not in student.say("help")
    assert "по-русски" in student.say("язык ru")
    assert "Команды" in student.say("помощь")
    assert "English" in student.say("lang en")
    assert "Language:" in student.say("lang de")


@pytest.mark.parametrize(("message", "expected"), [
    ("lessons", "git-basics"),
    ("start", "Which lesson?"),
    ("start nope", "There is no lesson “nope”"),
    ("check", "You are not in a lesson"),
    ("hint", "You are not in a lesson"),
    ("stop", "You are not in a lesson"),
    ("restart", "Nothing to restart"),
    ("what is this", "I did not understand “what is this”"),
    ("", "That message was empty"),
])
def test_answers_without_a_lesson(client: FlaskClient, tmp_path, message: str, expected: str) -> None:  # type: ignore[no-untyped-def]
    assert expected in ChatStudent(client, "new@example.com", tmp_path).say(message)


def test_a_sentence_containing_stop_does_not_stop_the_lesson(client: FlaskClient, tmp_path) -> None:  # type: ignore[no-untyped-def]
    student = ChatStudent(client, "sent@example.com", tmp_path)
    student.say("start git-basics")
    assert "I did not understand" in student.say("I will stop for today")
    assert "step 1 of 7" in student.say("status")


def test_check_on_a_question_asks_for_the_answer(client: FlaskClient, live_server: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    student = ChatStudent(client, "q@example.com", tmp_path)
    student.say("start git-basics")
    student.clone_repo()
    student.commit_file("README.md", "x\n", "x")
    student.git("push", "-q", "origin", "main")
    assert "This step wants an answer" in student.say("check")
    assert "Step 2 passed" in student.say("`Git Log`")


@pytest.mark.parametrize(("text", "command"), [
    ("\ufeffstop", Command("stop")),                       # BOM
    ("stop\u200b", Command("stop")),                       # zero-width space
    ("\u200estatus\u200f", Command("status")),             # LRM … RLM
    ("\u202estop", Command("stop")),                       # right-to-left override
    ("\u2066help\u2069", Command("help")),                 # LRI … PDI
    ("he\u2060lp", Command("help")),                       # word joiner inside
    ("he\u00adlp", Command("help")),                       # soft hyphen inside
    ("help?", Command("help")),
    ("Помощь?", Command("help")),
    ("ＨＥＬＰ", Command("help")),                         # full-width letters (NFKC)
    ("?", Command("help")),
    ("start git-basics!", Command("start", "git-basics")),
    ("Start Git-Basics.", Command("start", "git-basics")),
    ("start\u200b git-basics\u200b", Command("start", "git-basics")),
    ("lang EN!", Command("lang", "en")),
    ("\u200b", None),
    ("help me", None),
])
def test_parse_normalises_format_characters_case_and_final_punctuation(text: str, command: Command | None) -> None:
    assert parse(text) == command


@pytest.mark.parametrize(("text", "stripped"), [
    ("@**Lessonbot** start git-basics", "start git-basics"),
    ("@**Lessonbot|17** help", "help"),
    ("@_**Lessonbot** help", "help"),
    ("@**lessonbot** help", "help"),
    ("help @**Lessonbot**", "help"),
    ("@**all** help", "@**all** help"),
    ("@**everyone** stop", "@**everyone** stop"),
    ("@**Other Person** help", "@**Other Person** help"),
    ("@**Lessonbot Fan** help", "@**Lessonbot Fan** help"),
])
def test_only_the_bots_own_mention_is_stripped(text: str, stripped: str) -> None:
    assert strip_mention(text, "Lessonbot") == stripped


def test_a_wildcard_mention_is_not_a_command(client: FlaskClient, tmp_path) -> None:  # type: ignore[no-untyped-def]
    student = ChatStudent(client, "all@example.com", tmp_path)
    assert "I did not understand" in student.say("@**all** help")
    assert "Commands:" in student.say("@**Lessonbot** help")


@pytest.mark.parametrize("stop", ["\ufeffstop", "stop\u200b", "\u202estop", "Stop!", "СТОП."])
def test_stop_with_invisible_characters_or_punctuation_stops_the_run(client: FlaskClient, tmp_path, stop: str) -> None:  # type: ignore[no-untyped-def]
    student = ChatStudent(client, "inv@example.com", tmp_path)
    assert "Step 1 of 7" in student.say("Start Git-Basics.")
    assert "stopped without a grade" in student.say(stop)
    assert student.run() is not None and student.run().status.value == "stopped"  # type: ignore[union-attr]


@pytest.mark.parametrize(("typed", "rendered"), [
    ("plain words, really!", "plain words, really!"),
    ("Привет, мир? 🙂", "Привет, мир? 🙂"),
    ("f-0-1 it's", "f-0-1 it's"),
    ("[click](https://evil.example)", "`[click](https://evil.example)`"),
    ("https://evil.example", "`https://evil.example`"),
    ("evil.example", "`evil.example`"),
    ("![img](https://evil.example/x.png)", "`![img](https://evil.example/x.png)`"),
    ("```\ncode\n```", "```` ``` code ``` ````"),
    ("@**all** look", "`@**all** look`"),
    ("**bold", "`**bold`"),
    (":tada: party", "`:tada: party`"),
    ("#**general**", "`#**general**`"),
    ("a `tick` b", "``a `tick` b``"),
    ("`", "`` ` ``"),
    ("> quote\n# heading\n- item", "`> quote # heading - item`"),
    ("line one\n\nline two", "line one line two"),
    ("\u202eevil\u202c", "evil"),
    ("x" * 100, "x" * 59 + "…"),
])
def test_quote_inline_renders_nothing_of_the_students_text(typed: str, rendered: str) -> None:
    assert quote_inline(typed) == rendered


def test_replies_quote_the_students_markdown(client: FlaskClient, tmp_path) -> None:  # type: ignore[no-untyped-def]
    student = ChatStudent(client, "md@example.com", tmp_path)
    reply = student.say("[free points](https://evil.example) @**all**")
    assert "I did not understand “`[free points](https://evil.example) @**all**`”" in reply
    assert "There is no lesson “``evil`-lesson``”" in student.say("start evil`-lesson")


QUIZ = """\
id: quiz
platform: git
title: {ru: "Викторина", en: "Quiz"}
max_points: 10
steps:
  - id: question
    say: {ru: "Какая команда показывает состояние?", en: "Which command shows the state?"}
    check: {answer: {accept: ["git status"]}}
    points: 10
"""


def test_on_an_answer_step_commands_keep_their_meaning(database_url: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The rule (README, Lesson authoring): a command is a command on every step; answers cannot be command words."""
    (tmp_path / "lessons").mkdir()
    (tmp_path / "lessons" / "quiz.yaml").write_text(QUIZ)
    app = create_app(make_settings(database_url, tmp_path / "git", lessons_dir=tmp_path / "lessons",
                                   default_language="en"), TESTING=True)
    with app.app_context():
        student = ChatStudent(app.test_client(), "quiz@example.com", tmp_path)
        assert "Which command shows the state?" in student.say("start quiz")
        assert "step 1 of 1, 0 of 10 points" in student.say("status")
        assert "Not right" in student.say("state")
        assert "This step has no hint" in student.say("hint?")
        assert "You finished “Quiz”! Score: 10 of 10" in student.say("Git Status.")
        db.session.remove()
    with app.app_context():
        db.engine.dispose()
