"""Safe YAML loading that remembers where every value came from and refuses duplicate keys."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import yaml
from msgspec import Struct

from batchmail.errors import InvalidJobError, Problem

Path = tuple[str | int, ...]
_PLAIN_COLLECTIONS = frozenset({"tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"})
ScalarHook = Callable[[str, Path, int], str]


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
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        builder = _Builder(loader, filename, on_scalar)
        data = builder.build(node, ()) if node is not None else None
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


class _Builder:
    def __init__(self, loader: yaml.SafeLoader, filename: str, on_scalar: ScalarHook | None):
        self.loader = loader
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
        self.loader.flatten_mapping(node)  # resolves `<<` merge keys in place
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = self.loader.construct_object(key_node)
            if not isinstance(key, (str, int, float, bool)) or key is None:
                self._problem(key_node, path, f"a key must be a plain value, not {key!r}")
                continue
            key = str(key)
            if key in result:
                first = self.lines[(*path, key)]
                self._problem(key_node, path, f"duplicate key '{key}' (first at line {first})")
                continue
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
