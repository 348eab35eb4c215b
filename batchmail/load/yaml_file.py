"""Safe YAML loading that remembers where every value came from and refuses duplicate keys,
and documents that would take exponential time or blow the stack to load."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from itertools import chain
from typing import Any

import yaml
from msgspec import Struct

from batchmail.errors import InvalidJobError, Problem

Path = tuple[str | int, ...]
_PLAIN_COLLECTIONS = frozenset({"tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"})
ScalarHook = Callable[[str, Path, int], str]
_MERGE = "tag:yaml.org,2002:merge"

# Far beyond any job or recipients file (a job nests about five levels); PyYAML composes
# recursively, three stack frames a level, so a deeper document would exhaust the stack.
MAX_DEPTH = 100
# Aliases may repeat what an anchor holds, but not exponentially ("billion laughs"): a document
# may expand to at most this many values beyond EXPANSION_RATIO times the values written.
EXPANSION_ALLOWANCE = 100_000
EXPANSION_RATIO = 10


class Located(Struct, frozen=True):
    """A loaded document and the line (1-based) of every key and item in it."""

    data: Any
    lines: dict[Path, int]
    filename: str

    def line_of(self, path: Path) -> int:
        """The line of `path`, or of its nearest ancestor that has one."""
        for end in range(len(path), -1, -1):
            line = self.lines.get(path[:end])
            if line is not None:
                return line
        return 1

    def where(self, path: Path) -> str:
        return f"{self.filename}:{self.line_of(path)}"


def load_yaml(text: str, filename: str, on_scalar: ScalarHook | None = None) -> Located:
    """Load one YAML document with the safe loader.

    `on_scalar(value, path, line)` may rewrite string scalars before they are typed, so a plain
    scalar such as `${PORT}` becomes an int when the variable holds digits, as if written in place.
    """
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        merged = _check_expansion(node, loader) if node is not None else {}
        builder = _Builder(loader, filename, on_scalar, merged)
        data = builder.build(node, ()) if node is not None else None
    except _Refused as exc:
        raise InvalidJobError([Problem(f"{filename}:{exc.line}", str(exc))]) from None
    except yaml.MarkedYAMLError as exc:
        raise _syntax_error(exc, filename) from None
    except yaml.YAMLError as exc:
        raise InvalidJobError([Problem(filename, f"YAML error: {exc}")]) from None
    finally:
        loader.dispose()
    if builder.problems:
        raise InvalidJobError(builder.problems)
    return Located(data, builder.lines, filename)


def _syntax_error(exc: yaml.MarkedYAMLError, filename: str) -> InvalidJobError:
    mark = exc.problem_mark or exc.context_mark
    line = mark.line + 1 if mark else 1
    text = " ".join(p for p in (exc.context, exc.problem) if p) or "invalid YAML"
    return InvalidJobError([Problem(f"{filename}:{line}", f"YAML syntax error: {text}")])


class _Refused(Exception):
    """A document too deep or too large once expanded to load: at `line`."""

    def __init__(self, line: int, message: str):
        super().__init__(message)
        self.line = line


class _Loader(yaml.SafeLoader):
    """The safe loader, refusing collections nested deeper than MAX_DEPTH: in flow style
    already while scanning, where every open `[` or `{` may start a key the scanner must keep
    track of for the next 1024 characters, at a cost that grows with the nesting."""

    depth = 0

    def fetch_flow_collection_start(self, TokenClass: type[yaml.Token]) -> None:
        if self.flow_level >= MAX_DEPTH:
            raise _Refused(self.line + 1, _too_deep())
        super().fetch_flow_collection_start(TokenClass)

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        if self.depth >= MAX_DEPTH:
            line = self.peek_event().start_mark.line + 1  # type: ignore[no-untyped-call]
            raise _Refused(line, _too_deep())
        self.depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def _too_deep() -> str:
    return f"nested more than {MAX_DEPTH} levels deep (aliases included): refused"


def _children(node: yaml.Node) -> Iterable[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return chain.from_iterable(node.value)
    return node.value if isinstance(node, yaml.SequenceNode) else ()


def _check_expansion(root: yaml.Node, loader: yaml.SafeLoader) -> dict[int, int]:
    """Refuse a document whose aliases would make it build exponentially many values, nest
    too deep, or hold itself, before building it. Returns, per mapping with merge keys (by
    id), how many of its pairs, first in it now, were merged in."""
    expansion = _Expansion(loader)
    if isinstance(root, yaml.CollectionNode):
        expansion.check(root)
    return expansion.merged


class _Expansion:
    """One walk over the composed collections, each visited once (an alias is the node it
    refers to), with merge keys (`<<`) resolved on the way as building them would."""

    def __init__(self, loader: yaml.SafeLoader):
        self.loader = loader
        self.measured: dict[int, tuple[int, int]] = {}  # id -> (values once expanded, depth)
        self.order: list[yaml.Node] = []  # post-order: a collection after those it holds
        self.open_ids: set[int] = set()  # the collections being walked into
        self.scalars = 0  # as written
        self.merged: dict[int, int] = {}  # mapping id -> pairs merged in

    def check(self, root: yaml.CollectionNode) -> None:
        stack: list[tuple[yaml.Node, bool]] = [(root, False)]
        while stack:
            node, children_done = stack.pop()
            if children_done:
                self._close(node)
            elif id(node) in self.open_ids:
                raise _Refused(
                    node.start_mark.line + 1,
                    "an alias refers to a collection that holds it (a structure without end): "
                    "refused",
                )
            elif id(node) not in self.measured:
                self.open_ids.add(id(node))
                stack.append((node, True))
                stack.extend(self._collections_in(node))
        limit = EXPANSION_ALLOWANCE + EXPANSION_RATIO * (len(self.measured) + self.scalars)
        if self.measured[id(root)][0] > limit:
            blamed = next(n for n in self.order if self.measured[id(n)][0] > limit)
            raise _Refused(
                blamed.start_mark.line + 1,
                f"anchors and aliases expand to more than {limit:,} values "
                f'(an exponential expansion, a "billion laughs"): refused',
            )

    def _collections_in(self, node: yaml.Node) -> Iterator[tuple[yaml.Node, bool]]:
        for child in _children(node):
            if isinstance(child, yaml.CollectionNode):
                yield child, False
            else:
                self.scalars += 1

    def _close(self, node: yaml.Node) -> None:
        """Measure a collection whose children are measured."""
        self.open_ids.discard(id(node))
        if isinstance(node, yaml.MappingNode):
            own = sum(1 for key, _ in node.value if key.tag != _MERGE)
            self.loader.flatten_mapping(node)  # what it merges is flat already: no recursion
            if len(node.value) > own:  # the merged pairs, then its own
                self.merged[id(node)] = len(node.value) - own
        size, depth = 1, 1
        for child in _children(node):
            if isinstance(child, yaml.CollectionNode):
                inner, inner_depth = self.measured[id(child)]
                size, depth = size + inner, max(depth, inner_depth + 1)
            else:
                size, depth = size + 1, max(depth, 2)
        if depth > MAX_DEPTH:
            raise _Refused(node.start_mark.line + 1, _too_deep())
        self.measured[id(node)] = (size, depth)
        self.order.append(node)


class _Builder:
    def __init__(
        self,
        loader: yaml.SafeLoader,
        filename: str,
        on_scalar: ScalarHook | None,
        merged: dict[int, int],
    ):
        self.loader = loader
        self.merged = merged
        self.filename = filename
        self.on_scalar = on_scalar
        self.lines: dict[Path, int] = {}
        self.problems: list[Problem] = []

    def build(self, node: yaml.Node, path: Path) -> Any:
        self.lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.CollectionNode) and node.tag not in _PLAIN_COLLECTIONS:
            self._problem(node, path, f"unsupported YAML tag {node.tag}")
            return None
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        assert isinstance(node, yaml.ScalarNode)
        return self._scalar(node, path)

    def _mapping(self, node: yaml.MappingNode, path: Path) -> dict[Any, Any]:
        """Merged keys (`<<`, resolved already) yield to the mapping's own, and of several
        merged mappings the first wins (https://yaml.org/type/merge.html); a key written twice
        in one mapping is an error."""
        merged = self.merged.get(id(node), 0)
        result: dict[Any, Any] = {}
        overridable: set[str] = set()  # keys merged in
        for index, (key_node, value_node) in enumerate(node.value):
            key = self.loader.construct_object(key_node)
            if not isinstance(key, (str, int, float, bool)) or key is None:
                self._problem(key_node, path, f"a key must be a plain value, not {key!r}")
                continue
            key = str(key)
            if key in result and (index < merged or key not in overridable):
                if index >= merged:
                    first = self.lines[(*path, key)]
                    self._problem(key_node, path, f"duplicate key '{key}' (first at line {first})")
                continue
            if index < merged:
                overridable.add(key)
            else:
                overridable.discard(key)
            result[key] = self.build(value_node, (*path, key))
            self.lines[(*path, key)] = (
                key_node.start_mark.line + 1
            )  # the key's line, not the value's
        return result

    def _scalar(self, node: yaml.ScalarNode, path: Path) -> Any:
        if self.on_scalar is not None and "$" in node.value:
            new_value = self.on_scalar(node.value, path, node.start_mark.line + 1)
            if new_value != node.value:
                tag = node.tag
                if node.style is None:  # plain scalar: type it as if the value stood in the file
                    tag = self.loader.resolve(  # type: ignore[no-untyped-call]
                        yaml.ScalarNode, new_value, (True, False)
                    )
                node = yaml.ScalarNode(tag, new_value, node.start_mark, node.end_mark, node.style)
        return self.loader.construct_object(node, deep=True)

    def _problem(self, node: yaml.Node, path: Path, message: str) -> None:
        dotted = dotted_path(path)
        self.problems.append(
            Problem(f"{self.filename}:{node.start_mark.line + 1}", message, dotted)
        )


def dotted_path(path: Path) -> str:
    """`('recipients', 2, 'email')` -> `recipients[2].email`."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out
