"""Reading the workspace's YAML files safely: a size limit, libyaml when present, no alias bombs,
and every failure as one line of InvalidConfig naming the file (and the line when known).

Schedule configs, holiday sets, notifications and access.yaml all read through here.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from .errors import InvalidConfig

__all__ = ["MAX_CONFIG_BYTES", "MAX_YAML_VALUES", "SafeLoader", "TextDatesLoader", "read_documents", "read_mapping"]

MAX_CONFIG_BYTES = 1_000_000
# A file of MAX_CONFIG_BYTES holds fewer values than this; more can only come from aliases (a YAML bomb).
MAX_YAML_VALUES = 1_000_000


class _Expansion(Exception):
    """A document whose aliases expand beyond MAX_YAML_VALUES values, or refer to themselves."""


class SafeLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # libyaml when present: ~7x faster
    """The safe loader, refusing a document before it is built when its aliases would expand it
    past MAX_YAML_VALUES values (billion laughs) or make it recursive."""

    def construct_document(self, node: yaml.Node) -> Any:
        _check_expansion(node)
        return super().construct_document(node)


class TextDatesLoader(SafeLoader):
    """Dates stay text, so that pydantic reports an impossible one with its field and position."""


TextDatesLoader.add_constructor("tag:yaml.org,2002:timestamp", lambda loader, node: loader.construct_scalar(node))


def _check_expansion(root: yaml.Node) -> None:
    """Count the values of the document with every alias expanded, without expanding it (each
    node once, iteratively: deep nesting costs no stack)."""
    sizes: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        children = [n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode) else (
            node.value if isinstance(node, yaml.SequenceNode) else [])
        if children_done:
            on_path.discard(id(node))
            sizes[id(node)] = 1 + sum(sizes[id(c)] for c in children)
            if sizes[id(node)] > MAX_YAML_VALUES:
                raise _Expansion(f"the YAML aliases expand to more than {MAX_YAML_VALUES} values")
            continue
        if id(node) in sizes:
            continue
        if id(node) in on_path:
            raise _Expansion("a YAML alias refers to a value that contains it (recursive data)")
        on_path.add(id(node))
        stack.append((node, True))
        stack.extend((c, False) for c in children if id(c) not in sizes)


def read_documents(path: Path, loader: type[SafeLoader] = SafeLoader) -> list[Any]:
    """Every non-empty document of a YAML file, or one line of InvalidConfig."""
    source = str(path)
    try:
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise InvalidConfig(source, "", f"file is larger than {MAX_CONFIG_BYTES} bytes")
        text = path.read_text(encoding="utf-8")
        return [d for d in yaml.load_all(text, Loader=loader) if d is not None]  # noqa: S506 - a SafeLoader
    except UnicodeDecodeError:
        raise InvalidConfig(source, "", "file is not UTF-8 text") from None
    except OSError as exc:
        raise InvalidConfig(source, "", f"cannot read the file: {exc.strerror or type(exc).__name__}") from None
    except _Expansion as exc:
        raise InvalidConfig(source, "", str(exc)) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise InvalidConfig(source, where, f"malformed YAML: {problem}") from None
    except (ValueError, RecursionError) as exc:  # e.g. a date that does not exist: 2026-02-30
        problem = (str(exc) or type(exc).__name__).splitlines()[0]
        raise InvalidConfig(source, "", f"malformed YAML: {problem}") from None


def read_mapping(path: Path, expected: str, loader: type[SafeLoader] = SafeLoader) -> dict[Any, Any]:
    """A workspace file that holds one mapping ({} when empty), or one line of InvalidConfig
    saying what was ``expected``."""
    docs = read_documents(path, loader)
    if len(docs) > 1:
        raise InvalidConfig(str(path), "", "expected one YAML document")
    data = docs[0] if docs else {}
    if not isinstance(data, dict):
        raise InvalidConfig(str(path), "", f"expected {expected}")
    return data
