"""Read a Dockerfile into stages of instructions: the subset of the format the builder runs."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

SUPPORTED = {"FROM", "RUN", "COPY", "ENV", "WORKDIR", "USER", "ENTRYPOINT", "CMD", "LABEL"}


class DockerfileError(ValueError):
    """The Dockerfile uses something the builder does not run; the message names the line."""


@dataclass(frozen=True)
class Instruction:
    keyword: str
    flags: dict[str, str]
    args: tuple[str, ...]  # exec form (JSON) or the words of the shell form
    shell: str | None  # the shell form's text, for RUN, ENTRYPOINT and CMD
    line: int
    text: str  # as written, flags included: part of the build cache key


@dataclass
class Stage:
    base: str  # an image reference or the name of an earlier stage
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """Join continuation lines (a trailing backslash); drop comments and blank lines."""
    lines: list[tuple[int, str]] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue  # a comment inside a continued instruction is dropped, as Docker does
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending.append(stripped[:-1].rstrip())
            continue
        pending.append(stripped)
        lines.append((start, " ".join(part for part in pending if part)))
        pending = []
    if pending:
        lines.append((start, " ".join(pending)))
    return lines


def _split_flags(rest: str) -> tuple[dict[str, str], str]:
    flags: dict[str, str] = {}
    while match := re.match(r"--([a-z-]+)=(\S+)\s*", rest):
        flags[match.group(1)] = match.group(2)
        rest = rest[match.end():]
    return flags, rest


def _exec_form(rest: str) -> list[str] | None:
    if not rest.startswith("["):
        return None
    try:
        parsed = json.loads(rest)
    except json.JSONDecodeError:
        return None
    if isinstance(parsed, list) and all(isinstance(word, str) for word in parsed):
        return parsed
    return None


def parse(text: str) -> list[Stage]:
    """The stages of a Dockerfile, each with its instructions in order."""
    stages: list[Stage] = []
    for number, line in _logical_lines(text):
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        rest = rest.strip()
        if keyword not in SUPPORTED:
            raise DockerfileError(f"line {number}: {keyword} is not supported by hack/image")
        flags, rest = _split_flags(rest)
        exec_form = _exec_form(rest) if keyword in {"RUN", "ENTRYPOINT", "CMD", "COPY"} else None
        if exec_form is not None:
            instruction = Instruction(keyword, flags, tuple(exec_form), None, number, line)
        elif keyword in {"RUN", "ENTRYPOINT", "CMD"}:
            instruction = Instruction(keyword, flags, (), rest, number, line)
        else:
            instruction = Instruction(keyword, flags, tuple(shlex.split(rest)), None, number, line)
        if keyword == "FROM":
            words = instruction.args
            if len(words) == 3 and words[1].upper() == "AS":
                stages.append(Stage(base=words[0], name=words[2]))
            elif len(words) == 1:
                stages.append(Stage(base=words[0], name=None))
            else:
                raise DockerfileError(f"line {number}: FROM takes IMAGE [AS NAME]")
            continue
        if not stages:
            raise DockerfileError(f"line {number}: {keyword} before the first FROM")
        unknown = set(flags) - ({"from", "chown"} if keyword == "COPY" else set())
        if unknown:
            raise DockerfileError(f"line {number}: {keyword} flag --{sorted(unknown)[0]} is not supported")
        stages[-1].instructions.append(instruction)
    if not stages:
        raise DockerfileError("no FROM")
    return stages


def env_pairs(instruction: Instruction, env: dict[str, str]) -> dict[str, str]:
    """ENV's KEY=VALUE pairs (or the legacy ``ENV KEY VALUE``), with $VAR and ${VAR} expanded from ``env``."""
    words = list(instruction.args)
    if len(words) >= 2 and "=" not in words[0]:
        words = [f"{words[0]}={' '.join(words[1:])}"]
    pairs: dict[str, str] = {}
    for word in words:
        key, sep, value = word.partition("=")
        if not sep:
            raise DockerfileError(f"line {instruction.line}: ENV needs KEY=VALUE")
        pairs[key] = expand(value, {**env, **pairs})
    return pairs


def expand(value: str, env: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: env.get(m.group(1) or m.group(2), ""), value)


def read(path: Path) -> list[Stage]:
    return parse(path.read_text())
