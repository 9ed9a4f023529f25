"""The commands of one Cloud Build step, found by walking what it runs.

StepCheck follows a step's entrypoint, its arguments and every shell script it runs
(``bash -c``, ``eval``, ``trap``, sourced files of the repository, wrappers such as
``env`` and ``xargs``, ``find -exec``, make targets) down to each command, and asks
StepTools (cloudbuild_tools.py) whether that command runs in the step's container.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable, Sequence

from tools.infra.cloudbuild_tools import WORKSPACE, StepTools
from tools.infra.shell_commands import ASSIGNMENT, ShellSyntaxError, Word, parse

BUILTINS = frozenset(
    ".  : [ alias bg break builtin cd command continue declare dirs disown echo enable eval "  # noqa: SIM905
    "exec exit export false fg getopts hash help history jobs kill let local mapfile popd "
    "printf pushd pwd read readarray readonly return set shift shopt source test times trap "
    "true type typeset ulimit umask unalias unset wait".split()
)
SHELLS = frozenset({"sh", "bash", "dash", "ash"})
# Commands that run another command given as their arguments.
WRAPPERS = frozenset({"env", "nohup", "nice", "timeout", "xargs", "stdbuf", "exec", "command"})
_WRAPPER_VALUE_OPTIONS = {
    "env": {"-u", "--unset", "-C", "--chdir", "-S", "--split-string"},
    "nice": {"-n", "--adjustment"},
    "timeout": {"-s", "--signal", "-k", "--kill-after"},
    "xargs": {"-I", "-n", "-P", "-d", "-L", "-s", "-E", "-a", "--arg-file", "--delimiter"},
    "stdbuf": {"-i", "-o", "-e"},
}


class StepCheck(StepTools):
    """The commands of one step against what its container has."""

    # -- entry -----------------------------------------------------------------------

    def check_env(self, entries: Iterable[str]) -> None:
        for entry in entries:
            name, _, value = entry.partition("=")
            if name == "PATH":
                if "$PATH" in value or "${PATH}" in value:
                    self.problem(
                        "env sets PATH with $PATH in it, which Cloud Build passes on literally; "
                        'append to PATH in the script instead (export PATH="$$PATH:...")'
                    )
                self.set_path(value, expanded=False)

    def check_entry(self, entrypoint: str | None, args: Sequence[str], script: str | None) -> None:
        if script is not None:
            shebang = re.match(r"#!\s*(\S+)(?:[ \t]+(\S+))?", script)
            interpreter = (
                ["/bin/sh"] if shebang is None else [shebang[1], *filter(None, [shebang[2]])]
            )
            if posixpath.basename(interpreter[0]) == "env" and len(interpreter) > 1:
                interpreter = interpreter[1:]
            self.command([Word(interpreter[0])])
            if posixpath.basename(interpreter[0]) in SHELLS:
                self.script(script)
            return
        if entrypoint is not None:
            # Arguments reach the program as they are: no shell expands them.
            self.command([Word(entrypoint), *(Word(a) for a in args)])
        elif self.image.entrypoint is None or self.image.entrypoint_runs_args:
            if args:
                self.command([Word(a) for a in args])
            elif self.image.entrypoint is None:
                self.problem(f"has no entrypoint and no args; image {self.image.name} has none")

    # -- scripts ---------------------------------------------------------------------

    def script(self, text: str) -> None:
        try:
            parsed = parse(text)
        except ShellSyntaxError as error:
            self.problem(f"cannot check its script: {error}")
            return
        self.functions |= parsed.functions
        for command in parsed.commands:
            for inner in command.substitutions():
                self.script(inner)
            for assignment in command.assignments:
                self.assign(assignment)
            if command.words:
                self.command(command.words)

    def assign(self, word: Word) -> None:
        found = ASSIGNMENT.match(word.text)
        if found and found[1] == "PATH":
            self.set_path(found[2], expanded=True)

    def set_path(self, value: str, expanded: bool) -> None:
        entries = value.split(":")
        kept = expanded and any(e in ("$PATH", "${PATH}") for e in entries)
        if not kept:
            dropped = [d for d in dict.fromkeys(self.image.path) if d not in entries]
            if dropped:
                self.problem(
                    f"sets PATH={value}, dropping {':'.join(dropped)} of image "
                    f"{self.image.name}'s PATH; append to it instead"
                )
        for entry in entries:
            if entry.startswith("/") and entry not in self.image.path:
                self.path_dirs.append(self.normalise(entry))

    def command(self, words: list[Word]) -> None:
        if not words:
            return
        first = words[0]
        name = first.text
        if not first.literal:
            self.problem(
                f"runs a command named by an expansion ({name}); name the command so it "
                "can be checked"
            )
            return
        if name in BUILTINS or name in self.functions:
            self.builtin(name, words[1:])
            return
        if not self.resolve(name):
            return
        base = posixpath.basename(name)
        rest = words[1:]
        if base in SHELLS:
            self.shell(rest)
        elif base in WRAPPERS:
            self.command(self.wrapped(base, rest))
        elif base in ("apt-get", "apt"):
            self.apt(rest)
        elif re.fullmatch(r"pip3?(\.\d+)?", base):
            self.pip(name, rest)
        elif re.fullmatch(r"python3?(\.\d+)?", base):
            self.python(name, rest)
        elif base == "virtualenv":
            self.venv(name, [w.text for w in rest if not w.text.startswith("-")][-1:])
        elif base in ("cp", "install"):
            self.copy(rest)
        elif base == "make":
            self.make(rest)
        elif base == "find":
            self.find(rest)

    def find(self, args: list[Word]) -> None:
        """The commands of find's -exec, -execdir, -ok and -okdir."""
        i = 0
        while i < len(args):
            if args[i].text in ("-exec", "-execdir", "-ok", "-okdir"):
                end = next(
                    (j for j in range(i + 1, len(args)) if args[j].text in (";", "+")), len(args)
                )
                self.command(args[i + 1 : end])
                i = end
            i += 1

    def make(self, args: list[Word]) -> None:
        """make's targets run tools of their own; the table lists what each needs."""
        targets = [w.text for w in args if not w.text.startswith("-") and "=" not in w.text]
        for target in targets or [""]:
            key = f"make {target}".strip()
            needs = self.table.commands.get(key)
            if needs is None:
                self.problem(
                    f"runs {key}, whose needs scripts/cloudbuild_images.json does not list"
                )
                continue
            for tool in sorted(needs):
                reason = self.why_not(tool, f" (for {key})")
                if reason is not None:
                    self.problem(reason)

    def builtin(self, name: str, args: list[Word]) -> None:
        if name in ("export", "readonly", "declare", "typeset", "local"):
            for arg in args:
                self.assign(arg)
        elif name == "cd" and args and args[0].literal:
            self.cwd = self.normalise(args[0].text)
        elif name in ("exec", "builtin") or (
            name == "command" and args and args[0].text not in ("-v", "-V")
        ):
            self.command(args)
        elif name == "eval" and all(a.literal for a in args):
            self.script(" ".join(a.text for a in args))
        elif name == "trap" and args and args[0].literal and args[0].text != "-":
            self.script(args[0].text)
        elif name in (".", "source") and args:
            self.script_file(args[0])

    def script_file(self, word: Word) -> None:
        """A script run or sourced from a file: read when it is a file of the repository."""
        relative = posixpath.relpath(self.normalise(word.text), WORKSPACE)
        if word.literal and self.root is not None and relative in self.tracked:
            self.script((self.root / relative).read_text())
        else:
            self.problem(
                f"runs the shell script {word.text}, which is not a file of the repository the "
                "check can read"
            )

    def shell(self, args: list[Word]) -> None:
        i, reads_string = 0, False
        while i < len(args) and args[i].text[:1] in ("-", "+") and args[i].text != "--":
            if args[i].text.startswith("--"):  # --login, --norc ...
                i += 1
                continue
            flags = args[i].text[1:]
            reads_string = reads_string or "c" in flags
            i += 2 if "o" in flags else 1
        if reads_string and i < len(args):
            if not args[i].literal:
                self.problem(f"runs a shell script built by an expansion ({args[i].text})")
            else:
                self.script(args[i].text)
        elif i < len(args):
            self.script_file(args[i])
        else:
            self.problem("runs a shell that reads its script from standard input, unchecked")

    def wrapped(self, wrapper: str, args: list[Word]) -> list[Word]:
        """The command a wrapper runs: its arguments after options and assignments."""
        values = _WRAPPER_VALUE_OPTIONS.get(wrapper, set())
        i = 0
        while i < len(args):
            text = args[i].text
            if text == "--":
                i += 1
                break
            if wrapper == "env" and (ASSIGNMENT.match(text) or not args[i].literal):
                # An expansion among env's assignments is taken as more assignments.
                self.assign(args[i])
            elif text.startswith("-") and len(text) > 1:
                if text in values:
                    i += 1
            elif wrapper == "timeout" and re.fullmatch(r"[0-9.]+[smhd]?", text):
                pass
            else:
                break
            i += 1
        if wrapper == "command" and i < len(args) and args[i].text in ("-v", "-V"):
            return []
        return args[i:]
