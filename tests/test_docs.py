"""README.md and docs/*.md stay true to the tree: relative links and their #anchors resolve, every
`ctxsync COMMAND` they show is a real subcommand, and every flag they give a command is in that command's
`--help` (so are the examples of every `--help`). Pure file checks (no servers), about a second."""
from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

FENCE = re.compile(r"^\s*(```|~~~)")
LINK = re.compile(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
INLINE_CODE = re.compile(r"(`+)(.+?)\1")
# a command line that starts with ctxsync (optionally a path to it, a `$ ` prompt, or after | && ; $( ),
# skipping the global options that may come before the subcommand
COMMAND = re.compile(r"(?:^|[|;&(]|\$)\s*(?:\S*/)?ctxsync(?:\.cli)?((?:\s+--debug|\s+--actor(?:=|\s+)\S+)*)\s+([a-z][a-z0-9_-]*)")
PYTHON_M = re.compile(r"-m\s+ctxsync\.cli((?:\s+--debug|\s+--actor(?:=|\s+)\S+)*)\s+([a-z][a-z0-9_-]*)")


def split_code(text: str) -> tuple[list[str], list[str]]:
    """(prose lines, lines inside fenced code blocks)."""
    prose, code, fenced = [], [], False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
        elif fenced:
            code.append(line)
        else:
            prose.append(line)
    return prose, code


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lowercase, punctuation other than - and _ dropped, spaces -> '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading keeps its text
    text = re.sub(r"<[^>]+>", "", text).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    found = set()
    prose, _ = split_code(path.read_text(encoding="utf-8"))
    for line in prose:
        match = re.match(r"^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not match:
            continue
        base = slug(match.group(1))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    for line in prose:  # explicit HTML anchors
        found.update(re.findall(r"<a\s+(?:name|id)=\"([^\"]+)\"", line))
    return found


def links(path: Path) -> list[tuple[int, str]]:
    """(line number, target) of every relative link outside code."""
    out, fenced = [], False
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if FENCE.match(line):
            fenced = not fenced
            continue
        if fenced:
            continue
        line = INLINE_CODE.sub("", line)
        for target in LINK.findall(line):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I) or target.startswith("//"):
                continue  # http:, https:, mailto: ...
            out.append((number, target))
    return out


def broken_links(paths: list[Path]) -> list[str]:
    problems = []
    cache: dict[Path, set[str]] = {}
    for path in paths:
        for number, target in links(path):
            where = f"{path.name if path.parent.name != 'docs' else 'docs/' + path.name}:{number}: {target}"
            file_part, _, anchor = target.partition("#")
            dest = (path.parent / file_part).resolve() if file_part else path
            if not dest.exists():
                problems.append(f"{where}: no such file")
                continue
            if anchor:
                if dest.suffix != ".md" or dest.is_dir():
                    problems.append(f"{where}: anchor on a file that is not markdown")
                    continue
                if dest not in cache:
                    cache[dest] = anchors(dest)
                if anchor not in cache[dest]:
                    problems.append(f"{where}: no heading with anchor #{anchor} in {dest.name}")
    return problems


def named_commands(path: Path) -> list[tuple[int, str]]:
    """(line number, subcommand) for every `ctxsync COMMAND` in a fenced code block or an inline code span."""
    out: list[tuple[int, str]] = []
    fenced = False
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if FENCE.match(line):
            fenced = not fenced
            continue
        spans = [line] if fenced else [m.group(2) for m in INLINE_CODE.finditer(line)]
        for span in spans:
            for pattern in (COMMAND, PYTHON_M):
                out.extend((number, m.group(2)) for m in pattern.finditer(span))
    return out


def subcommands() -> set[str]:
    from ctxsync.cli import build_parser

    parser = build_parser()
    [sub] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return set(sub.choices)


def unknown_commands(paths: list[Path], known: set[str]) -> list[str]:
    return [f"{path.name}:{number}: ctxsync {name}"
            for path in paths for number, name in named_commands(path) if name not in known]


# flags: `ctxsync [global options] SUB [SUBSUB | ACTION] ... --flag` against the parser that owns it

NOT_SHELL = {"python", "yaml", "yml", "json", "promql"}  # fenced blocks whose lines are no shell commands
STOP = {"|", "||", "&&", ";", ">", ">>", "2>", "2>&1", "<"}  # the command ends (or an alternative follows)


def command_candidates(path: Path) -> list[tuple[int, str]]:
    """(line number, text) of every place a command may be shown: shell lines of fenced blocks (only the
    `$ ` lines of a transcript; lines continued with a backslash joined), inline code spans in prose,
    and code spans in a shell line's `# comment`."""
    out: list[tuple[int, str]] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    number = 0
    while number < len(lines):
        line, number = lines[number], number + 1
        fence = FENCE.match(line)
        if not fence:
            out.extend((number, m.group(2)) for m in INLINE_CODE.finditer(line))
            continue
        info = line.strip().lstrip("`~").split()
        block, start = [], number
        while number < len(lines) and not FENCE.match(lines[number]):
            block.append(lines[number])
            number += 1
        number += 1  # the closing fence
        if info and info[0] in NOT_SHELL:
            continue
        transcript = any(text.lstrip().startswith("$ ") for text in block)
        joined: list[tuple[int, str]] = []
        for offset, text in enumerate(block, start + 1):
            if joined and joined[-1][1].endswith("\\"):
                joined[-1] = (joined[-1][0], joined[-1][1][:-1] + " " + text.strip())
            else:
                joined.append((offset, text))
        for offset, text in joined:
            code, _, comment = text.partition(" #")
            out.extend((offset, m.group(2)) for m in INLINE_CODE.finditer(comment))
            if transcript:
                if not code.lstrip().startswith("$ "):
                    continue
                code = code.lstrip()[2:]
            out.append((offset, code))
    return out


def _tokens(text: str) -> list[str]:
    try:
        words = shlex.split(text, comments=True)
    except ValueError:  # an unbalanced quote in an abridged line
        words = text.split()
    return [w.strip("[]") for w in words if w.strip("[]")]


def command_calls(text: str) -> list[list[str]]:
    """The argument lists of the `ctxsync ...` (or `python -m ctxsync.cli ...`) commands a shell line runs:
    the word must be where a command starts (first, after VAR=value words, after | ; && or `-m`)."""
    words, calls = _tokens(text), []
    for i, word in enumerate(words):
        before = words[i - 1] if i else None
        at_start = i == 0 or before in STOP or re.fullmatch(r"[A-Z_][A-Z0-9_]*=\S*", before or "") and \
            all(re.fullmatch(r"[A-Z_][A-Z0-9_]*=\S*", w) for w in words[:i])
        if (word.split("/")[-1] == "ctxsync" and at_start) or (word == "ctxsync.cli" and before == "-m"):
            calls.append(words[i + 1:])
    return calls


def _subparsers(parser: argparse.ArgumentParser) -> argparse._SubParsersAction | None:
    return next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)


def unknown_flags(args: list[str], top: argparse.ArgumentParser) -> list[str]:
    """What in one command's arguments its parsers do not know: flags, subcommands, and action words of a
    positional with choices (`dev up`). `a | b` where b is another choice at the same place is an
    alternative (`dlq list | show`); any other | ; && > ends the command."""
    problems: list[str] = []
    parser, positional, name = top, 0, "ctxsync"
    fork: tuple[argparse.ArgumentParser, int, str] | None = None
    i = 0
    while i < len(args):
        word = args[i]
        i += 1
        if word in STOP:
            if word == "|" and fork and i < len(args) and _is_choice(fork[0], fork[1], args[i]):
                parser, positional, name = fork
                continue
            break
        if word.startswith("-") and len(word) > 1 and not re.match(r"-\d", word):
            flag = word.split("=", 1)[0]
            action = parser._option_string_actions.get(flag)
            if action is None:
                problems.append(f"{name} {flag}")
            elif action.nargs != 0 and "=" not in word:
                i += 1  # its value
            continue
        subs = _subparsers(parser)
        if subs is not None and positional == 0:
            if word in subs.choices:
                fork = (parser, 0, name)
                parser, positional, name = subs.choices[word], 0, f"{name} {word}"
            elif subs.required or parser is top:
                problems.append(f"{name} {word}: no such subcommand")
                break
            continue
        positionals = _positionals(parser)
        choices = list(positionals[positional].choices or ()) if positional < len(positionals) else []
        if choices:
            wrong = [w for w in word.split("|") if w not in choices]  # a|b: either
            if wrong and not re.fullmatch(r"[A-Z_<>]+", word):
                problems.append(f"{name} {word}: not one of {sorted(choices)}")
            fork = (parser, positional, name)
        positional += 1
    return problems


def _positionals(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if not a.option_strings and not isinstance(a, argparse._SubParsersAction)]


def _is_choice(parser: argparse.ArgumentParser, positional: int, word: str) -> bool:
    subs = _subparsers(parser)
    if subs is not None and positional == 0:
        return word in subs.choices
    positionals = _positionals(parser)
    return positional < len(positionals) and word in (positionals[positional].choices or ())


def doc_flag_problems(paths: list[Path], top: argparse.ArgumentParser) -> list[str]:
    problems: list[str] = []
    for path in paths:
        where = path.name if path.parent.name != "docs" else f"docs/{path.name}"
        for number, text in command_candidates(path):
            for args in command_calls(text):
                if args and args[0].endswith(":"):
                    continue  # an error message that names its command (`ctxsync view: ...`)
                problems.extend(f"{where}:{number}: {p}" for p in unknown_flags(args, top))
    return problems


def all_parsers(parser: argparse.ArgumentParser, name: str = "ctxsync") -> list[tuple[str, argparse.ArgumentParser]]:
    out = [(name, parser)]
    subs = _subparsers(parser)
    for sub_name, sub in (subs.choices.items() if subs else ()):
        out.extend(all_parsers(sub, f"{name} {sub_name}"))
    return out


def help_example_problems(top: argparse.ArgumentParser) -> list[str]:
    """The `ctxsync ...` example lines of every --help (description and epilog), checked like the docs'
    commands; a line that holds a second command's flags far after the first one's end was joined by a
    stray backslash."""
    problems = []
    for name, parser in all_parsers(top):
        lines = f"{parser.description or ''}\n{parser.epilog or ''}".splitlines()
        for number, line in enumerate(lines):
            if not line.lstrip().startswith("ctxsync "):
                continue
            if re.search(r"\S {4,}--\w", line.partition(" #")[0]):
                problems.append(f"{name} --help: a collapsed line: {line.strip()[:80]}")
            while line.endswith("\\") and number + 1 < len(lines):
                number += 1
                line = line[:-1] + " " + lines[number].strip()
            command = re.split(r"\s{3,}| #", line.strip())[0]  # what follows aligned spaces explains it
            for args in command_calls(command):
                problems.extend(f"{name} --help: {p}" for p in unknown_flags(args, top))
    return problems


def test_every_flag_the_docs_give_a_command_is_in_its_help():
    from ctxsync.cli import build_parser

    top = build_parser()
    calls = [args for path in DOCS for _, text in command_candidates(path) for args in command_calls(text)]
    assert sum(any(a.startswith("--") for a in args) for args in calls) > 50, "the finder found few flags: it broke"
    assert doc_flag_problems(DOCS, top) == []


def test_every_help_example_uses_real_flags_and_keeps_its_lines():
    from ctxsync.cli import build_parser

    top = build_parser()
    examples = [line for _, p in all_parsers(top) for line in f"{p.description}\n{p.epilog}".splitlines()
                if line.lstrip().startswith("ctxsync ")]
    assert len(examples) > 50, "the finder found few examples: it broke"
    assert help_example_problems(top) == []


def test_the_flag_check_fails_on_wrong_flags(tmp_path):
    top = argparse.ArgumentParser(prog="ctxsync")
    top.add_argument("--debug", action="store_true")
    subs = top.add_subparsers(dest="command", required=True)
    dlq = subs.add_parser("dlq")
    dlq.add_argument("action", choices=("list", "show"))
    dlq.add_argument("--reason")
    pii = subs.add_parser("pii").add_subparsers(dest="pii", required=True)
    pii.add_parser("new-key").add_argument("--out")
    pii.add_parser("reveal").add_argument("--user")
    page = tmp_path / "page.md"
    page.write_text(
        "Run `ctxsync dlq show --reason R` or `ctxsync dlq --nope`.\n"
        "```bash\nctxsync --debug dlq list --reason=x | grep y   # or `ctxsync pii reveal --user u`\n"
        "ctxsync pii new-key | reveal --user u\nX=1 ctxsync dlq show \\\n   --reason x --limit 3\n"
        "echo ctxsync dlq --not-a-command\n```\n"
        "```console\n$ ctxsync dlq list|show\n$ ctxsync dlq lst\nctxsync dlq: output, not a command --x\n"
        "$ ctxsync pii new-key --user u\n```\n"
        "```python\nsubprocess.run(['ctxsync', 'dlq', '--x'])\n```\n")
    assert doc_flag_problems([page], top) == [
        "page.md:1: ctxsync dlq --nope",
        "page.md:5: ctxsync dlq --limit",
        "page.md:11: ctxsync dlq lst: not one of ['list', 'show']",
        "page.md:13: ctxsync pii new-key --user",
    ]
    dlq.description = "examples:\n  ctxsync dlq list    all of them (--reason: some)\n"
    dlq.epilog = ("examples:\n  ctxsync dlq show --reason x \\\n      --limit 2\n"
                  "  ctxsync dlq list --reason a       --reason b\n")
    assert help_example_problems(top) == [
        "ctxsync dlq --help: ctxsync dlq --limit",
        "ctxsync dlq --help: a collapsed line: ctxsync dlq list --reason a       --reason b",
    ]


def test_the_docs_exist():
    assert (ROOT / "README.md").exists() and len(DOCS) > 5


def test_every_relative_link_and_anchor_resolves():
    assert broken_links(DOCS) == []


def test_every_ctxsync_command_named_in_code_is_a_real_subcommand():
    known = subcommands()
    assert {"run", "verify", "erase", "status"} <= known
    named = {name for path in DOCS for _, name in named_commands(path)}
    assert len(named) > 10, "the command finder found almost nothing: the pattern broke"
    assert unknown_commands(DOCS, known) == []


# the checkers themselves fail on a broken document


def test_the_checks_fail_on_broken_docs(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("# A page\n\n## `ctxsync dlq`, and replay!\n\ntext\n\n## A page\n")
    readme = tmp_path / "README.md"
    readme.write_text(
        "# Top\n\n[ok](docs/a.md) [ok](docs/a.md#ctxsync-dlq-and-replay) [ok](docs/a.md#a-page-1) [ok](#top)\n"
        "[ok](https://example.com/x) `[not a link](nowhere.md)`\n"
        "```\n[not a link](nowhere.md)\n$ ctxsync verify --x\nctxsync --actor bob erase u1\n```\n"
        "Run `ctxsync run` or `python -m ctxsync.cli view`; ctxsync turns prose into nothing.\n")
    paths = [readme, tmp_path / "docs" / "a.md"]
    assert broken_links(paths) == []
    assert sorted(name for _, name in named_commands(readme)) == ["erase", "run", "verify", "view"]
    assert unknown_commands(paths, {"run", "verify", "erase", "view", "dlq"}) == []

    readme.write_text(readme.read_text() + "[bad](docs/b.md) [bad](docs/a.md#nope) [bad](#nope)\n"
                      "`ctxsync frobnicate`\n")
    assert len(broken_links(paths)) == 3
    assert unknown_commands(paths, {"run", "verify", "erase", "view", "dlq"}) == ["README.md:12: ctxsync frobnicate"]


@pytest.mark.parametrize("heading, anchor", [
    ("Latest run (2026-12-02): batched engine, end of the throughput work",
     "latest-run-2026-12-02-batched-engine-end-of-the-throughput-work"),
    ("`ctxsync dlq`, and replay from a topic", "ctxsync-dlq-and-replay-from-a-topic"),
    ("State TTL: users who leave", "state-ttl-users-who-leave"),
    ("snake_case and [a link](x.md)", "snake_case-and-a-link"),
])
def test_slugs_follow_github(heading, anchor):
    assert slug(heading) == anchor
