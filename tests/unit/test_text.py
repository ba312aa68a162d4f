"""faceledger.text: the one rule for new subject names, the cleaning of free text, and
stored text made visible for a terminal. Pure functions: tables of (input, expected)."""

from __future__ import annotations

import unicodedata

import pytest

from faceledger.errors import ConfigError
from faceledger.operations import Acting
from faceledger.text import NAME_MAX, describe, free_text, quoted, shown, subject_name, visible

# ---- subject names ------------------------------------------------------------------------

ACCEPTED = [
    ("obama", "obama"),
    ("  Barack Obama  ", "Barack Obama"),
    ("Jose\u0301", "José"),  # NFD (as macOS names folders) -> NFC
    ("Anne-Marie O'Neil (2)", "Anne-Marie O'Neil (2)"),
    ("李小龍", "李小龍"),
    ("Zoë Ångström", "Zoë Ångström"),
    ("ada 🙂", "ada 🙂"),
    ("x" * NAME_MAX, "x" * NAME_MAX),
    ("e\u0301" * NAME_MAX, "é" * NAME_MAX),  # counted after NFC
    ("obama\n", "obama"),  # stripped like any whitespace at the ends
]


@pytest.mark.parametrize(("text", "expected"), ACCEPTED)
def test_accepted_names_are_normalised(text: str, expected: str) -> None:
    assert subject_name(text) == expected


REFUSED = [
    # (name, position, the character as the message names it, what kind of character)
    ("obama\u200b", 6, "ZERO WIDTH SPACE (U+200B)", "invisible format character"),
    ("\u202eobama", 1, "RIGHT-TO-LEFT OVERRIDE (U+202E)", "invisible format character"),
    ("ab\u2066c\u2069", 3, "LEFT-TO-RIGHT ISOLATE (U+2066)", "invisible format character"),
    ("a\u00adb", 2, "SOFT HYPHEN (U+00AD)", "invisible format character"),
    ("a\ufeffb", 2, "ZERO WIDTH NO-BREAK SPACE (U+FEFF)", "invisible format character"),
    ("a/b", 2, "SOLIDUS (U+002F)", "path separator"),
    ("a\\b", 2, "REVERSE SOLIDUS (U+005C)", "path separator"),
    ("tab\there", 4, "CHARACTER TABULATION (U+0009)", "control character"),
    ("new\nline", 4, "LINE FEED (U+000A)", "control character"),
    ("\x1b[2Jesc", 1, "ESCAPE (U+001B)", "control character"),
    ("nul\x00", 4, "NULL (U+0000)", "control character"),
    ("del\x7f", 4, "DELETE (U+007F)", "control character"),
    ("csi\x9b31m", 4, "CONTROL SEQUENCE INTRODUCER (U+009B)", "control character"),
    ("a\u2028b", 2, "LINE SEPARATOR (U+2028)", "line separator"),
    ("\udcffab", 1, "SURROGATE (U+DCFF)", "surrogate"),
    ("a\ue000", 2, "PRIVATE USE CHARACTER (U+E000)", "private-use character"),
]


@pytest.mark.parametrize(("text", "position", "named", "kind"), REFUSED)
def test_refused_names_name_the_character_and_its_position(
    text: str, position: int, named: str, kind: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        subject_name(text)
    message = str(caught.value)
    assert f"character {position} is {named}" in message
    assert kind in message
    assert message.isprintable(), "the message itself must be safe to print"


def test_the_message_reads_as_documented() -> None:
    with pytest.raises(ConfigError) as caught:
        subject_name("obama\u200b")
    assert str(caught.value) == (
        "subject name 'obama\\u200b': character 6 is ZERO WIDTH SPACE (U+200B), an invisible "
        "format character; names may hold letters, digits, spaces and punctuation"
    )


@pytest.mark.parametrize("text", ["", "   ", "\t\n ", "\u3000"])
def test_an_empty_name_is_refused(text: str) -> None:
    with pytest.raises(ConfigError, match="needs a name"):
        subject_name(text)


def test_a_name_longer_than_the_column_is_refused() -> None:
    with pytest.raises(ConfigError, match=f"is {NAME_MAX + 100} characters long; at most"):
        subject_name("x" * (NAME_MAX + 100))


def test_every_control_character_is_named_by_its_unicode_alias() -> None:
    for code in [*range(0x20), 0x7F, 0x85, 0x90, 0x9B, 0x9C, 0x9D]:
        char = chr(code)
        name = describe(char).rsplit(" (", 1)[0]
        assert unicodedata.lookup(name) == char, name


def test_quoted_cuts_the_middle_of_long_text() -> None:
    text = "a" * 50 + "\x1b" + "z" * 50
    shown_text = quoted(text)
    assert len(shown_text) < 50 and shown_text.endswith("zzz'") and shown_text.isprintable()


# ---- free text ----------------------------------------------------------------------------

CLEANED = [
    (None, None),
    ("", None),
    ("   ", None),
    ("\x00\x1b\x07", None),
    ("\t\n\r", None),
    ("door access check", "door access check"),
    ("  door check  ", "door check"),
    ("\x1b]0;pwned\x07\x1b[2J", "]0;pwned[2J"),
    ("line one\nline two", "line one line two"),
    ("nul\x00in the middle", "nulin the middle"),
    ("Jose\u0301", "José"),
    ("lone \udcff surrogate", "lone \ufffd surrogate"),
    ("a\u2028b", "a b"),
    ("family 👨\u200d👩\u200d👧", "family 👨\u200d👩\u200d👧"),  # format characters are kept
]


@pytest.mark.parametrize(("text", "expected"), CLEANED)
def test_free_text_is_cleaned(text: str | None, expected: str | None) -> None:
    assert free_text(text, "purpose", 100) == expected


@pytest.mark.parametrize("text", [None, "", "   ", "\x00\x00\x00", " \x1b "])
def test_required_free_text_refuses_nothing_real(text: str | None) -> None:
    with pytest.raises(ConfigError, match=r"^purpose is empty"):
        free_text(text, "purpose", 100, required=True)


def test_free_text_longer_than_allowed_is_refused() -> None:
    with pytest.raises(ConfigError, match="comment is 11 characters long; at most 10"):
        free_text("x" * 11, "comment", 10)
    assert free_text(" " + "x" * 10 + "\x00 ", "comment", 10) == "x" * 10


def test_acting_keeps_a_cleaned_purpose_and_case() -> None:
    acting = Acting("ada", "operator", "  \x1b]0;pwned\x07 door check\n", "\t")
    assert acting.purpose == "]0;pwned door check"
    assert acting.case_ref is None
    assert acting.because("   ").purpose is None
    record = acting.because("audit\x00", "T-1\x1b").record("identify")
    assert (record.purpose, record.case_ref) == ("audit", "T-1")


def test_acting_refuses_an_endless_purpose() -> None:
    with pytest.raises(ConfigError, match="purpose is"):
        Acting("ada", "operator", "x" * 100_000)


# ---- shown at a terminal ------------------------------------------------------------------

VISIBLE = [
    ("plain text", "plain text"),
    ("José 李小龍 🙂", "José 李小龍 🙂"),
    ("\x1b]0;pwned\x07\x1b[2J", "\\x1b]0;pwned\\x07\\x1b[2J"),
    ("a\tb\nc\rd", "a\\tb\\nc\\rd"),
    ("\u202eevil", "\\u202eevil"),
    ("zw\u200b", "zw\\u200b"),
    ("\udcff", "\\udcff"),
    ("tag\U000e0001", "tag\\U000e0001"),
    ("a\u2028b", "a\\u2028b"),
    ("\x9b31m", "\\x9b31m"),
]


@pytest.mark.parametrize(("text", "expected"), VISIBLE)
def test_visible_escapes_what_does_not_print(text: str, expected: str) -> None:
    assert visible(text) == expected


@pytest.mark.parametrize("text", [t for t, _ in VISIBLE] + [n for n, *_ in REFUSED])
def test_nothing_invisible_survives(text: str) -> None:
    out = visible(text)
    assert not [c for c in out if unicodedata.category(c) in ("Cc", "Cf", "Cs", "Zl", "Zp")]
    out.encode("utf-8")  # a lone surrogate would not encode


def test_shown_also_escapes_rich_markup() -> None:
    assert shown("[red]boo[/] \x1b[2J") == "\\[red]boo\\[/] \\x1b[2J"
    assert shown(None) == ""
