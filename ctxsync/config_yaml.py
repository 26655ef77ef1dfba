"""jobs.yaml read with bounds. YAML aliases are references: a 1 KB file of nested aliases ("billion
laughs") composes into a small graph that becomes billions of values once something walks it (the
validator, the line index), which made `ctxsync jobs` grow to 7.2 GB. So the file's size, its nesting and
the number of values its aliases expand to are checked on the composed graph, before anything walks it."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

MAX_BYTES = 1_000_000     # the shipped jobs.yaml is about 8 KB
MAX_DEPTH = 64            # nesting, aliases followed (the shipped file nests 6 deep)
MAX_NODES = 100_000       # values once every alias is expanded (the shipped file has about 400)


class YamlLimitError(ValueError):
    """The document exceeds a bound; `line` is 1-based (0 when no line applies), `hint` what to do."""

    def __init__(self, message: str, hint: str, line: int = 0) -> None:
        super().__init__(message)
        self.hint, self.line = hint, line


def read_bounded(path: Path) -> str:
    """The file as text, refused before reading more than MAX_BYTES (OSError and UnicodeDecodeError pass)."""
    with path.open("rb") as f:
        data = f.read(MAX_BYTES + 1)
    if len(data) > MAX_BYTES:
        raise YamlLimitError(f"more than {MAX_BYTES:,} bytes, the most a jobs file may have",
                             "jobs.yaml holds settings, not data: is this the right file?")
    return data.decode("utf-8")


class _DepthBoundLoader(yaml.SafeLoader):
    """PyYAML composes recursively: a deep `[[[[...` would end in a RecursionError, so depth is capped."""

    _depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise YamlLimitError(f"nested more than {MAX_DEPTH} levels deep", "flatten the structure",
                                     self.peek_event().start_mark.line + 1)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _check_expansion(root: yaml.Node) -> None:
    """Count each node's values with its aliases expanded (memoized, so linear in the graph), without
    recursion; refuse a cycle, a graph deeper than MAX_DEPTH or larger than MAX_NODES at the first node
    that crosses the bound (its line is the one to fix)."""
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        children = _children(node)
        if children_done:
            on_path.discard(key)
            size[key] = 1 + sum(size[id(c)] for c in children)
            depth[key] = 1 + max((depth[id(c)] for c in children), default=0)
            line, hint = node.start_mark.line + 1, "write the values out, or use fewer aliases"
            if size[key] > MAX_NODES:
                raise YamlLimitError(f"aliases expand this value to more than {MAX_NODES:,} values", hint, line)
            if depth[key] > MAX_DEPTH:
                raise YamlLimitError(f"aliases nest this value more than {MAX_DEPTH} levels deep", hint, line)
            continue
        if key in size:
            continue
        if key in on_path:
            raise YamlLimitError("an alias refers to a value that contains it", "remove the alias that refers to its own "
                                 "value", node.start_mark.line + 1)
        on_path.add(key)
        stack.append((node, True))
        stack.extend((c, False) for c in children if id(c) not in size)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def compose_bounded(text: str) -> tuple[yaml.Node | None, Any]:
    """(the composed document, its data), or YamlLimitError; yaml.YAMLError for text that is not YAML."""
    loader = _DepthBoundLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, None
        _check_expansion(node)
        return node, loader.construct_document(node)
    finally:
        loader.dispose()
