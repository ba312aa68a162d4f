"""Text from outside, checked once for every front end, and stored text made safe to show.

Pure functions, no I/O:

- :func:`subject_name` is the one rule for a *new* subject's name (the CLI, the REST API
  and the library all create subjects through ``faceledger.operations``, which applies it):
  NFC, stripped, at most :data:`NAME_MAX` characters, and nothing invisible or
  misleading: no control, format (zero-width, bidi), surrogate, private-use, unassigned or
  line-separator character, no ``/`` or ``\\``. Names already stored are looked up as they
  are (a gallery made before the rule still lists, shows and erases them).
- :func:`free_text` cleans a purpose, case reference, legal basis or comment: control
  characters dropped (line breaks and tabs become spaces), NFC, stripped; ``None`` when
  nothing is left, a :class:`~faceledger.errors.ConfigError` where text is required.
- :func:`visible` writes control and format characters as escapes (``\\x1b``,
  ``\\u202e``), so stored text cannot drive the terminal that shows it; :func:`shown` also
  escapes rich markup, for the CLI's tables and lines.
"""

from __future__ import annotations

import unicodedata

from rich.markup import escape

from faceledger.errors import ConfigError

NAME_MAX = 200
"""The longest subject name, in characters: the size of the gallery's ``name`` column."""

_NAME_REFUSED = {
    "Cc": "a control character",
    "Cf": "an invisible format character",
    "Cs": "a lone surrogate (no character at all)",
    "Co": "a private-use character",
    "Cn": "an unassigned code point",
    "Zl": "a line separator",
    "Zp": "a paragraph separator",
}
"""Unicode general categories a name may not hold, with what to call them."""

_SEPARATORS = {"/": "a path separator", "\\": "a path separator"}
_ALLOWED = "names may hold letters, digits, spaces and punctuation"
_ONE_SEGMENT = "a name must serve as one segment of a URL and as a folder's name"

_HIDDEN = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
"""Categories :func:`visible` escapes: they draw nothing, or drive the terminal."""

_C0 = (
    "NULL", "START OF HEADING", "START OF TEXT", "END OF TEXT", "END OF TRANSMISSION",
    "ENQUIRY", "ACKNOWLEDGE", "ALERT", "BACKSPACE", "CHARACTER TABULATION", "LINE FEED",
    "LINE TABULATION", "FORM FEED", "CARRIAGE RETURN", "SHIFT OUT", "SHIFT IN",
    "DATA LINK ESCAPE", "DEVICE CONTROL ONE", "DEVICE CONTROL TWO", "DEVICE CONTROL THREE",
    "DEVICE CONTROL FOUR", "NEGATIVE ACKNOWLEDGE", "SYNCHRONOUS IDLE",
    "END OF TRANSMISSION BLOCK", "CANCEL", "END OF MEDIUM", "SUBSTITUTE", "ESCAPE",
    "INFORMATION SEPARATOR FOUR", "INFORMATION SEPARATOR THREE", "INFORMATION SEPARATOR TWO",
    "INFORMATION SEPARATOR ONE",
)  # fmt: skip
"""The Unicode name aliases of U+0000..U+001F (control characters have no plain name)."""

_CONTROL_NAMES = {
    **{chr(i): name for i, name in enumerate(_C0)},
    "\x7f": "DELETE",
    "\x85": "NEXT LINE",
    "\x90": "DEVICE CONTROL STRING",
    "\x9b": "CONTROL SEQUENCE INTRODUCER",
    "\x9c": "STRING TERMINATOR",
    "\x9d": "OPERATING SYSTEM COMMAND",
}
_UNNAMED = {"Cc": "CONTROL CHARACTER", "Cs": "SURROGATE", "Co": "PRIVATE USE CHARACTER"}
_SHORT_ESCAPES = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}
_QUOTED_MAX = 40


def describe(char: str) -> str:
    """A character by its Unicode name and code point: ``ZERO WIDTH SPACE (U+200B)``."""
    name = _CONTROL_NAMES.get(char) or unicodedata.name(char, "")
    if not name:
        name = _UNNAMED.get(unicodedata.category(char), "UNASSIGNED CODE POINT")
    return f"{name} (U+{ord(char):04X})"


def quoted(text: str) -> str:
    """``text`` quoted for a message: Python's repr (which escapes what does not print),
    its middle cut when long."""
    if len(text) > _QUOTED_MAX:
        text = text[: _QUOTED_MAX - 10] + "…" + text[-9:]
    return repr(text)


def _name_problem(char: str) -> str | None:
    return _SEPARATORS.get(char) or _NAME_REFUSED.get(unicodedata.category(char))


def subject_name(text: str) -> str:
    """The name a new subject is created under: ``text`` NFC-normalised and stripped.

    ConfigError (naming the character by its Unicode name and its position) when it
    holds a control, format, surrogate, private-use, unassigned or line-separator
    character, a ``/`` or ``\\``; when it is empty or longer than :data:`NAME_MAX`."""
    name = unicodedata.normalize("NFC", text).strip()
    if not name:
        raise ConfigError("a subject needs a name: this one is empty (or only spaces)")
    for position, char in enumerate(name, 1):
        problem = _name_problem(char)
        if problem is not None:
            rule = _ONE_SEGMENT if char in _SEPARATORS else _ALLOWED
            raise ConfigError(
                f"subject name {quoted(name)}: character {position} is {describe(char)}, "
                f"{problem}; {rule}"
            )
    if len(name) > NAME_MAX:
        raise ConfigError(
            f"subject name {quoted(name)} is {len(name)} characters long; at most {NAME_MAX}"
        )
    return name


def _plain(char: str) -> str:
    """One character of free text: control characters dropped (those that separate words
    become a space), lone surrogates replaced."""
    kind = unicodedata.category(char)
    if kind in ("Cc", "Zl", "Zp"):
        return " " if char.isspace() else ""
    return "\ufffd" if kind == "Cs" else char


def free_text(text: str | None, what: str, max_len: int, *, required: bool = False) -> str | None:
    """A purpose, case reference, legal basis or comment, cleaned: control characters
    dropped (tabs and line breaks become spaces), NFC, stripped. ``None`` when nothing is
    left; ConfigError then if ``required``, and when longer than ``max_len``."""
    cleaned = ""
    if text is not None:
        cleaned = unicodedata.normalize("NFC", "".join(map(_plain, text))).strip()
    if not cleaned:
        if required:
            raise ConfigError(
                f"{what} is empty: say it in words (spaces and control characters alone "
                "are not one)"
            )
        return None
    if len(cleaned) > max_len:
        raise ConfigError(f"{what} is {len(cleaned)} characters long; at most {max_len}")
    return cleaned


def _escaped(char: str) -> str:
    if char in _SHORT_ESCAPES:
        return _SHORT_ESCAPES[char]
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def visible(text: str) -> str:
    """``text`` with control, format, surrogate and line-separator characters written as
    escapes (``\\x1b``, ``\\u202e``, ``\\n``): nothing in it reaches a terminal raw."""
    if text.isprintable():
        return text
    return "".join(_escaped(c) if unicodedata.category(c) in _HIDDEN else c for c in text)


def shown(text: str | None) -> str:
    """Stored or outside text for a rich console: :func:`visible`, then markup-escaped
    (``None`` is shown as nothing)."""
    return "" if text is None else escape(visible(text))


__all__ = ["NAME_MAX", "describe", "free_text", "quoted", "shown", "subject_name", "visible"]
