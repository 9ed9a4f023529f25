"""The simple commands of a POSIX or bash script, read without running it.

scripts/check_cloudbuild.py uses this to find every command a Cloud Build step runs: the
first word of each command after ``&&``, ``||``, ``;``, ``|``, ``&``, newlines,
parentheses and the reserved words (``if``, ``then``, ``do``, ``{`` ...), with the scripts
of ``$(...)`` and backticks (in words, double quotes and unquoted here-documents) kept for
reading in turn. Quotes are removed from words; expansions are kept as written and mark
the word as not literal. Function definitions are collected. Syntax this reader does not
follow (``case``, ``select``, ``coproc``, ``(( ))``, an unterminated quote or
here-document) raises ShellSyntaxError rather than being passed over.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field

RESERVED = frozenset("if then elif else fi do done while until { } ! time".split())  # noqa: SIM905
ASSIGNMENT = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\+?=(.*)$", re.S)


class ShellSyntaxError(ValueError):
    """Shell the check cannot read; reported rather than passed over."""


@dataclass
class Word:
    text: str  # quotes removed; expansions kept as written ($x, ${x}, $(...))
    literal: bool = True  # no expansion in it
    subs: list[str] = field(default_factory=list)  # scripts of its $(...) and `...`


@dataclass(frozen=True)
class Op:
    text: str


@dataclass(frozen=True)
class Redirect:
    text: str


Token = Word | Op | Redirect

_OPERATORS = ("&&", "||", ";;", "|&", ";", "|", "&", "(", ")", "\n")
_REDIRECTS = ("<<<", "<<-", "&>>", "<<", ">>", ">&", "<&", "&>", ">|", "<>", "<", ">")


def _matching(text: str, start: int, opening: str, closing: str) -> int:
    """Index of the ``closing`` that balances ``opening`` before ``start``."""
    depth, i = 1, start
    while i < len(text):
        char = text[i]
        if char == "\\":
            i += 2
            continue
        if char == "'" and opening != "{":
            end = text.find("'", i + 1)
            if end < 0:
                break
            i = end + 1
            continue
        if char == '"':
            i = _end_of_double_quotes(text, i + 1) + 1
            continue
        if char == opening:
            depth += 1
        elif char == closing:
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise ShellSyntaxError(f"unbalanced {opening}{closing}")


def _end_of_double_quotes(text: str, start: int) -> int:
    i = start
    while i < len(text):
        char = text[i]
        if char == "\\":
            i += 2
            continue
        if char == '"':
            return i
        if text.startswith("$(", i):
            i = _matching(text, i + 2, "(", ")") + 1
            continue
        if char == "`":
            i = _end_of_backticks(text, i + 1) + 1
            continue
        i += 1
    raise ShellSyntaxError('unterminated "')


def _end_of_backticks(text: str, start: int) -> int:
    i = start
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text[i] == "`":
            return i
        i += 1
    raise ShellSyntaxError("unterminated `")


def _substitutions(text: str) -> list[str]:
    """The scripts of the ``$(...)`` and backticks in an unquoted here-document."""
    found, i = [], 0
    while i < len(text):
        if text[i] == "\\":
            i += 2
        elif text.startswith("$((", i):
            i = _matching(text, i + 3, "(", ")") + 2
        elif text.startswith("$(", i):
            end = _matching(text, i + 2, "(", ")")
            found.append(text[i + 2 : end])
            i = end + 1
        elif text[i] == "`":
            end = _end_of_backticks(text, i + 1)
            found.append(text[i + 1 : end])
            i = end + 1
        else:
            i += 1
    return found


class Lexer:
    """Words, operators and redirections of a POSIX/bash script, here-documents skipped."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.i = 0
        self.tokens: list[Token] = []
        self.heredocs: list[tuple[Word, bool, bool]] = []  # delimiter, strip tabs, quoted

    def run(self) -> list[Token]:
        text = self.text
        while self.i < len(text):
            char = text[self.i]
            if char in " \t":
                self.i += 1
            elif text.startswith("\\\n", self.i):
                self.i += 2
            elif char == "#":
                end = text.find("\n", self.i)
                self.i = len(text) if end < 0 else end
            elif char == "\n":
                self.tokens.append(Op("\n"))
                self.i += 1
                self._read_heredocs()
            else:
                redirect = next((r for r in _REDIRECTS if text.startswith(r, self.i)), None)
                operator = next((o for o in _OPERATORS if text.startswith(o, self.i)), None)
                if redirect:
                    self.tokens.append(Redirect(redirect))
                    self.i += len(redirect)
                    if redirect in ("<<", "<<-"):
                        self._heredoc_delimiter(strip=redirect == "<<-")
                elif operator:
                    self.tokens.append(Op(operator))
                    self.i += len(operator)
                else:
                    self._word()
        if self.heredocs:
            raise ShellSyntaxError("here-document without its end")
        return self.tokens

    def _heredoc_delimiter(self, strip: bool) -> None:
        while self.i < len(self.text) and self.text[self.i] in " \t":
            self.i += 1
        start = self.i
        word = self._word()
        if word is None:
            raise ShellSyntaxError("here-document without a delimiter")
        quoted = any(q in self.text[start : self.i] for q in "'\"\\")
        self.heredocs.append((word, strip, quoted))

    def _read_heredocs(self) -> None:
        for word, strip, quoted in self.heredocs:
            body = []
            while True:
                if self.i >= len(self.text):
                    raise ShellSyntaxError(f"here-document {word.text} without its end")
                end = self.text.find("\n", self.i)
                end = len(self.text) if end < 0 else end
                line = self.text[self.i : end]
                self.i = min(end + 1, len(self.text))
                if (line.lstrip("\t") if strip else line) == word.text:
                    break
                body.append(line)
            if not quoted:
                word.subs.extend(_substitutions("\n".join(body)))
        self.heredocs = []

    def _word(self) -> Word | None:
        text, i = self.text, self.i
        word = Word("")
        parts: list[str] = []
        while i < len(text):
            char = text[i]
            if char in " \t\n;&|()<>":
                if char in "<>" and parts and "".join(parts).isdigit() and word.literal:
                    self.i = i  # a file descriptor number, as in 2>&1: not a word
                    return None
                break
            if char == "\\":
                if text.startswith("\\\n", i):
                    i += 2
                    continue
                parts.append(text[i + 1 : i + 2])
                i += 2
            elif char == "'":
                end = text.find("'", i + 1)
                if end < 0:
                    raise ShellSyntaxError("unterminated '")
                parts.append(text[i + 1 : end])
                i = end + 1
            elif char == '"':
                end = _end_of_double_quotes(text, i + 1)
                inner = text[i + 1 : end]
                self._expansions(inner, word)
                parts.append(re.sub(r'\\([$`"\\])', r"\1", inner))
                i = end + 1
            elif char == "$" or char == "`":
                end = self._expansion_end(i)
                self._expansions(text[i:end], word)
                parts.append(text[i:end])
                i = end
            else:
                parts.append(char)
                i += 1
        if i == self.i:
            raise ShellSyntaxError(f"cannot read {text[i : i + 20]!r}")
        self.i = i
        word.text = "".join(parts)
        self.tokens.append(word)
        return word

    def _expansion_end(self, i: int) -> int:
        text = self.text
        if text[i] == "`":
            return _end_of_backticks(text, i + 1) + 1
        if text.startswith("$((", i):
            return _matching(text, i + 3, "(", ")") + 2
        if text.startswith("$(", i):
            return _matching(text, i + 2, "(", ")") + 1
        if text.startswith("${", i):
            return _matching(text, i + 2, "{", "}") + 1
        found = re.match(r"\$([A-Za-z_][A-Za-z0-9_]*|[0-9?#@*!$-])", text[i:])
        return i + (len(found[0]) if found else 1)

    @staticmethod
    def _expansions(text: str, word: Word) -> None:
        if re.search(r"(?<!\\)(\$[A-Za-z_{(0-9?#@*!$-]|`)", text):
            word.literal = False
            word.subs.extend(_substitutions(text))


@dataclass
class Command:
    assignments: list[Word] = field(default_factory=list)
    words: list[Word] = field(default_factory=list)
    others: list[Word] = field(default_factory=list)  # redirection targets, loop words

    def substitutions(self) -> Iterator[str]:
        for word in (*self.assignments, *self.words, *self.others):
            yield from word.subs


@dataclass
class Script:
    commands: list[Command]
    functions: set[str]


def parse(text: str) -> Script:
    """Simple commands in order; compound commands are read through, not interpreted."""
    tokens = Lexer(text).run()
    commands: list[Command] = []
    functions: set[str] = set()
    current = Command()
    i = 0

    def finish() -> None:
        nonlocal current
        if current.assignments or current.words or current.others:
            commands.append(current)
        current = Command()

    while i < len(tokens):
        token = tokens[i]
        if isinstance(token, Op):
            if (
                token.text == "("
                and len(current.words) == 1
                and not current.assignments
                and i + 1 < len(tokens)
                and tokens[i + 1] == Op(")")
            ):
                functions.add(current.words[0].text)  # name() { ...; }
                current = Command()
                i += 2
                continue
            if token.text == ";;":
                raise ShellSyntaxError("case statements are not supported")
            if token.text == "(" and i + 1 < len(tokens) and tokens[i + 1] == Op("("):
                raise ShellSyntaxError("arithmetic commands (( )) are not supported")
            finish()
        elif isinstance(token, Redirect):
            target = tokens[i + 1] if i + 1 < len(tokens) else None
            if not isinstance(target, Word):
                raise ShellSyntaxError(f"{token.text} without a target")
            current.others.append(target)
            i += 1
        elif not current.words:
            bare = token.literal
            if ASSIGNMENT.match(token.text) and token.text[0] != "=":
                current.assignments.append(token)
            elif bare and token.text in RESERVED and not current.assignments:
                pass
            elif bare and token.text in ("case", "select", "coproc"):
                raise ShellSyntaxError(f"{token.text} statements are not supported")
            elif bare and token.text in ("for", "[["):
                closing = {"for": ("\n", ";"), "[[": ("]]",)}[token.text]
                i += 1
                while i < len(tokens):
                    item = tokens[i]
                    if isinstance(item, Op) and item.text in closing:
                        break
                    if isinstance(item, Word):
                        if item.text in closing:
                            break
                        current.others.append(item)
                    i += 1
                finish()
            elif bare and token.text == "function":
                if i + 1 < len(tokens) and isinstance(tokens[i + 1], Word):
                    name = tokens[i + 1]
                    assert isinstance(name, Word)
                    functions.add(name.text)
                    i += 1
                if i + 2 < len(tokens) and tokens[i + 1] == Op("(") and tokens[i + 2] == Op(")"):
                    i += 2
            else:
                current.words.append(token)
        else:
            current.words.append(token)
        i += 1
    finish()
    return Script(commands, functions)
