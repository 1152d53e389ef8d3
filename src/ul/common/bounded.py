"""Bounded reading of every YAML and JSON file the project reads (params, conf/, exports' configs,
manifests, indexes, caches, metrics): a size cap, a nesting cap, no YAML aliases (an alias
"bomb" expands exponentially once a consumer walks it), mapping keys that are strings and given
once, and no NaN or Infinity in JSON. Each refusal is one ParseError naming the file and the reason.

Written here because no library bounds all of these: PyYAML and json bound none of them.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from ul.common.regular import NotRegularFile, open_regular

MAX_BYTES = 1 << 20  # a params file, a config; callers with larger files (shard indexes) pass their own
MAX_DEPTH = 32  # the deepest file we write nests 4 levels


class ParseError(ValueError):
    """A YAML or JSON input refused: the message names the input and the reason."""


def read_text(path: str | Path, max_bytes: int = MAX_BYTES, what: str = "file") -> str:
    """The UTF-8 text of a regular file (after links) of at most `max_bytes`: a folder, a pipe or a
    device is refused without blocking, and no more than `max_bytes` + 1 bytes are ever read."""
    path = Path(path)
    try:
        with open_regular(path) as f:
            data = f.read(max_bytes + 1)
    except NotRegularFile:
        raise ParseError(f"{path}: not a regular file (a {what} is a file)") from None
    except OSError as err:
        raise ParseError(f"{path}: cannot open the {what} ({err.strerror})") from None
    if len(data) > max_bytes:
        raise ParseError(f"{path}: larger than {max_bytes:,} bytes; a {what} is at most that")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ParseError(f"{path}: not UTF-8 text") from None


def load_yaml(text: str, source: str, max_depth: int = MAX_DEPTH):
    """`text` (YAML) as plain data, parsed with the safe loader under the rules above."""

    class Loader(yaml.SafeLoader):
        depth = 0

        def compose_node(self, parent, index):
            event = self.peek_event()
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
                raise ParseError(f"{source}: line {event.start_mark.line + 1}: YAML anchors and aliases are refused")
            self.depth += 1
            if self.depth > max_depth:
                raise ParseError(f"{source}: line {event.start_mark.line + 1}: nests deeper than {max_depth} levels")
            try:
                return super().compose_node(parent, index)
            finally:
                self.depth -= 1

        def construct_mapping(self, node, deep=False):
            seen = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=deep)
                line = key_node.start_mark.line + 1
                if not isinstance(key, str):
                    raise ParseError(f"{source}: line {line}: key {key!r} is a {type(key).__name__}, not a string")
                if key in seen:
                    raise ParseError(f"{source}: line {line}: key {key!r} is given twice")
                seen.add(key)
            return super().construct_mapping(node, deep=deep)

    try:
        return yaml.load(text, Loader=Loader)  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark else ""
        raise ParseError(f"{source}: {where}not valid YAML ({getattr(err, 'problem', None) or err})") from None


def load_json(text: str | bytes, source: str, max_depth: int = MAX_DEPTH):
    """`text` (JSON) as plain data, under the rules above (json's own recursion guard stops a
    nesting that would exhaust the stack before the depth is measured)."""

    def pairs(items):
        out = {}
        for k, v in items:
            if k in out:
                raise ParseError(f"{source}: key {k!r} is given twice")
            out[k] = v
        return out

    def constant(name):
        raise ParseError(f"{source}: {name} is not a number JSON allows (non-finite values are refused)")

    try:
        data = json.loads(text, object_pairs_hook=pairs, parse_constant=constant)
    except RecursionError:
        raise ParseError(f"{source}: nests deeper than {max_depth} levels") from None
    except (ValueError, TypeError) as err:
        if isinstance(err, ParseError):
            raise
        raise ParseError(f"{source}: not valid JSON ({str(err).splitlines()[0]})") from None
    if depth(data) > max_depth:
        raise ParseError(f"{source}: nests deeper than {max_depth} levels")
    return data


def depth(data) -> int:
    """How deep lists and mappings nest in `data` (a scalar: 0), measured without recursion."""
    deepest, stack = 0, [(data, 1)]
    while stack:
        node, level = stack.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else None
        if children is not None:
            deepest = max(deepest, level)
            stack.extend((c, level + 1) for c in children)
    return deepest


def read_yaml(path: str | Path, max_bytes: int = MAX_BYTES, what: str = "YAML file", max_depth: int = MAX_DEPTH):
    return load_yaml(read_text(path, max_bytes, what), str(path), max_depth)


def read_json(path: str | Path, max_bytes: int = MAX_BYTES, what: str = "JSON file", max_depth: int = MAX_DEPTH):
    return load_json(read_text(path, max_bytes, what), str(path), max_depth)
