"""Every command block in README.md and docs/*.md is either run here or marked illustrative.

A command block is a fenced block of shell (```bash, ```sh, ```shell, ```console), or any fenced block with a
`$ ` prompt or a `ctxsync ...` command line (python, yaml, json and promql blocks never are). Two kinds:

- a **transcript** (`$ command` lines, each followed by the output the doc shows) is run here: each command
  with bash, in order, in a fresh temporary directory holding links to sample_data/ and jobs.yaml, with
  CTXSYNC_HOME in that directory, `ctxsync` on PATH, COLUMNS=80 (what --help wraps to without a terminal)
  and stdout and stderr in one stream (unbuffered, so in the order the command wrote them). What it printed
  must match what the doc shows after the normalization below;
- a block that needs servers, a cluster or a long run is marked: the line just before its fence (blank lines
  allowed in between) is `<!-- illustrative: why -->`. Such blocks still have their flags checked against
  `--help` (tests/test_docs.py).

A command block that is neither fails the test, so is a marker on a block that is not a command block.

Normalization, applied to both the doc's text and the command's output (volatile parts only):
  ISO-8601 times (2026-12-03T00:12:11.526Z)        -> <time>
  durations (0.1s, 59.0s, 7 ms, 3 min)              -> <duration>
  rates (5,892/s, 240.1 events/s)                   -> <rate>
  the temporary directory, and the repository path  -> <tmp>, <repo>
  trailing spaces; trailing blank lines
In the doc's text (only there) two marks leave something out: `…` inside a line stands for any text on that
line, and a line that is just `...` stands for any number of lines (progress lines, a long listing).
"""
from __future__ import annotations

import difflib
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.test_docs import DOCS, command_calls

ROOT = Path(__file__).resolve().parent.parent
SHELL_INFO = {"bash", "sh", "shell", "console", "zsh"}
NOT_COMMANDS = {"python", "yaml", "yml", "json", "promql"}
FENCE = re.compile(r"^\s*(```|~~~)(.*)$")
MARKER = re.compile(r"^\s*<!--\s*illustrative\s*(?::\s*(.*?))?\s*-->\s*$")
COMMAND_TIMEOUT_S = 600  # a Flink run on a loaded 2-core machine takes a minute; never a timing assertion

# blocks marked outside their file (none now: README carries its markers); an entry whose block is marked
# in the file (or gone) fails the test, so the list only shrinks
MARKED_ELSEWHERE: dict[tuple[str, str], str] = {}

VOLATILE = [
    (re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d)"), "<time>"),
    (re.compile(r"(?<![\w.])\d[\d,]*(?:\.\d+)?(?: [a-z]+)?/s\b"), "<rate>"),
    (re.compile(r"(?<![\w.])\d+(?:\.\d+)? ?(?:ms|s|min)\b"), "<duration>"),
]


@dataclass
class Block:
    path: Path
    line: int  # of the opening fence
    info: str
    lines: list[str]
    marker: str | None  # the illustrative marker's reason ("" if it gives none); None: not marked

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


@dataclass
class Step:
    command: str
    expected: list[str] = field(default_factory=list)


def blocks(path: Path) -> list[Block]:
    """The fenced blocks of a markdown file, with the illustrative marker before each (if any)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    found, i, last_text = [], 0, None
    while i < len(lines):
        fence = FENCE.match(lines[i])
        if not fence:
            if lines[i].strip():
                last_text = lines[i]
            i += 1
            continue
        start, body = i + 1, []
        i += 1
        while i < len(lines) and not FENCE.match(lines[i]):
            body.append(lines[i])
            i += 1
        marked = MARKER.match(last_text) if last_text is not None else None
        found.append(Block(path, start, fence.group(2).strip(), body, (marked.group(1) or "") if marked else None))
        last_text, i = None, i + 1
    return found


def is_command_block(block: Block) -> bool:
    kind = block.info.split()[0].lower() if block.info else ""
    if kind in NOT_COMMANDS:
        return False
    return kind in SHELL_INFO or any(line.startswith("$ ") for line in block.lines) or \
        any(command_calls(line) and line.lstrip().startswith(("ctxsync", "python -m ctxsync")) for line in block.lines)


def transcript(block: Block) -> list[Step]:
    """The block's `$ ` commands (a command continued with a trailing backslash joined) and their output;
    [] if it has no `$ ` line."""
    steps: list[Step] = []
    continued = False
    for line in block.lines:
        if continued:
            steps[-1].command += "\n" + line
        elif line.startswith("$ "):
            steps.append(Step(line[2:]))
        elif steps:
            steps[-1].expected.append(line)
        continued = bool(steps) and steps[-1].command.endswith("\\") and not steps[-1].expected
    return steps


def normalize(text: str, tmp: Path | None = None) -> str:
    if tmp is not None:
        text = text.replace(str(tmp.resolve()), "<tmp>").replace(str(tmp), "<tmp>")
    text = text.replace(str(ROOT), "<repo>")
    for pattern, replacement in VOLATILE:
        text = pattern.sub(replacement, text)
    return "\n".join(line.rstrip() for line in text.splitlines()).rstrip("\n")


def expected_pattern(expected: str) -> re.Pattern[str]:
    """The doc's (normalized) output as a regex: `…` is any text within a line, a `...` line any lines."""
    parts = []
    for line in expected.splitlines():
        if line.strip() == "...":
            parts.append(r"(?:[^\n]*\n)*?")
        else:
            parts.append(".*?".join(re.escape(piece) for piece in line.split("…")) + r"\n")
    return re.compile("".join(parts), re.DOTALL)


def output_matches(expected: str, actual: str) -> bool:
    return expected_pattern(expected + "\n").fullmatch(actual + "\n") is not None


def run_step(command: str, tmp: Path) -> str:
    """One command in the sandbox: HOME, CTXSYNC_HOME and the dev servers' directory (./.ctxsync/dev) all in
    `tmp` and no CTXSYNC_* variable of ours, so a doc command can reach no server and no file of a user."""
    ours = {k: v for k, v in os.environ.items() if not k.startswith("CTXSYNC_")}
    env = {**ours, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "PYTHONUNBUFFERED": "1", "COLUMNS": "80", "HOME": str(tmp), "CTXSYNC_HOME": str(tmp / ".ctxsync-home")}
    done = subprocess.run(["bash", "-c", command], cwd=tmp, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=COMMAND_TIMEOUT_S)
    return done.stdout


def all_blocks() -> list[Block]:
    return [block for path in DOCS for block in blocks(path)]


RUN = [b for b in all_blocks() if is_command_block(b) and b.marker is None and transcript(b)]


def runs_flink(block: Block) -> bool:
    """A step that runs a job on the default runner may start local Flink (the `flink` mark, as elsewhere)."""
    return any(re.search(r"\bctxsync run \S+", s.command) and "--runner" not in s.command for s in transcript(block))


def _key(block: Block) -> tuple[str, str]:
    return str(block.path.relative_to(ROOT)), block.lines[0] if block.lines else ""


def test_every_command_block_is_run_or_marked_illustrative():
    found = all_blocks()
    command_blocks = [b for b in found if is_command_block(b)]
    assert len(found) > 40 and len(command_blocks) > 20, "the block finder found little: it broke"
    elsewhere = {_key(b): b for b in command_blocks}
    problems = []
    for block in command_blocks:
        key = _key(block)
        if block.marker is None and not transcript(block) and key not in MARKED_ELSEWHERE:
            problems.append(f"{block.where}: a command block that is neither a transcript this test runs "
                            "nor marked <!-- illustrative: why -->")
    for block in found:
        if block.marker is not None and not is_command_block(block):
            problems.append(f"{block.where}: marked illustrative but not a command block")
    for key in MARKED_ELSEWHERE:
        if key not in elsewhere or elsewhere[key].marker is not None:
            problems.append(f"{key[0]}: {key[1][:40]}...: marked in the file or gone: "
                            "remove it from MARKED_ELSEWHERE")
    assert problems == []
    assert {path for path, _ in MARKED_ELSEWHERE} <= {"README.md"}, "docs/ pages carry their own markers"
    assert len(RUN) >= 3, "no transcript left to run"


@pytest.mark.parametrize("block", [pytest.param(b, marks=[pytest.mark.flink] if runs_flink(b) else [], id=b.where)
                                   for b in RUN])
def test_transcript_prints_what_the_doc_shows(block: Block, tmp_path: Path):
    for name in ("sample_data", "jobs.yaml"):
        (tmp_path / name).symlink_to(ROOT / name)
    for step in transcript(block):
        actual = normalize(run_step(step.command, tmp_path), tmp_path)
        expected = normalize("\n".join(step.expected))
        if not output_matches(expected, actual):
            diff = "\n".join(difflib.unified_diff(expected.splitlines(), actual.splitlines(),
                                                  "the doc shows", "the command printed", lineterm=""))
            pytest.fail(f"{block.where}: $ {step.command}\n{diff}")


# the checker itself


def test_normalization_and_wildcards():
    printed = ("generate: 20000/24000 (83%)  5,892/s  3.4s\nerased at 2026-12-03T00:12:11.526Z in 7 ms  \n"
               "written to /tmp/x/out/a.html\nread 3,000 events, 240.1 events/s\n\n")
    assert normalize(printed, Path("/tmp/x")) == ("generate: 20000/24000 (83%)  <rate>  <duration>\n"
                                                 "erased at <time> in <duration>\nwritten to <tmp>/out/a.html\n"
                                                 "read 3,000 events, <rate>")
    assert output_matches("a\n...\nd", "a\nb\nc\nd") and output_matches("a\n...\nd", "a\nd")
    assert output_matches("raw: {\"eventId\": …", "raw: {\"eventId\": \"evt-1\", \"x\": 2}")
    assert not output_matches("a\nd", "a\nb\nd")
    assert not output_matches("read 3,000", "read 3,001")
    assert not output_matches("a\n...\nd", "a\nb\nc\ne")
    assert not output_matches("count 2…", "total 2")


def test_the_block_rules_fail_on_unmarked_and_misplaced_markers(tmp_path: Path):
    page = tmp_path / "page.md"
    page.write_text("# P\n\n```bash\nctxsync verify\n```\n\n<!-- illustrative: needs Redis -->\n\n"
                    "```console\n$ ctxsync view u\nu financial v1\n```\n\n"
                    "<!-- illustrative -->\n```text\nno command\n```\n"
                    "```\n$ ctxsync jobs\ncontext-sync …\n...\n```\n```python\nsubprocess.run(['ctxsync'])\n```\n")
    found = blocks(page)
    assert [(b.line, b.info, is_command_block(b), b.marker) for b in found] == [
        (3, "bash", True, None), (9, "console", True, "needs Redis"), (15, "text", False, ""),
        (18, "", True, None), (23, "python", False, None)]
    assert transcript(found[0]) == [] and transcript(found[3]) == [Step("ctxsync jobs", ["context-sync …", "..."])]
