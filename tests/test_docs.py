"""README.md and docs/*.md stay true to the tree: relative links and their #anchors resolve, and every
`ctxsync COMMAND` they show is a real subcommand. Pure file checks (no servers), well under a second."""
from __future__ import annotations

import argparse
import re
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
    out, fenced = [], False
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
