"""Ansible-style YAML inventories: hosts, groups, vars, group_vars/ and host_vars/ with Ansible's precedence.

FORMAT. The inventory is Ansible's YAML shape: a top-level mapping of group
names (usually just ``all``), each with optional ``hosts`` (name -> vars or
null), ``children`` (group name -> group) and ``vars``. Host names may hold
numeric ranges (``gw[01:10].example.com``, ``[1:9:2]`` with a stride). Beside
the file, ``group_vars/NAME`` and ``host_vars/NAME`` (a file NAME, NAME.yml,
NAME.yaml, NAME.json, or a directory of such files read in name order) add
variables. Duplicate keys in one mapping are an error (YAML would keep the
last silently).

PRECEDENCE (Ansible's, lowest first; a later value replaces an earlier one
whole, ``hash_behaviour = replace``):

    1. group vars in the inventory file, groups ordered by depth (``all``
       first, then its children, ...), then by ansible_group_priority, then name
    2. group_vars/all
    3. group_vars/GROUP, in the same group order
    4. host vars in the inventory file
    5. host_vars/HOST

Every value remembers its origin (file and line), so later checks can name
where a bad value came from.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import yaml

from harden.errors import InventoryError

_RANGE = re.compile(r"\[([0-9]+):([0-9]+)(?::([0-9]+))?\]")
_VAR_SUFFIXES = ("", ".yml", ".yaml", ".json")


@dataclass(frozen=True)
class Origin:
    """Where a value was written: file and 1-based line (0 when unknown)."""

    path: Path
    line: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line}" if self.line else str(self.path)


class _Mapping(dict[Any, Any]):
    """A YAML mapping that remembers the line of each key and of itself."""

    line: int = 0
    lines: dict[Any, int]


class _Loader(yaml.SafeLoader):
    """SafeLoader whose mappings are _Mapping and whose duplicate keys are errors."""


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> _Mapping:
    loader.flatten_mapping(node)
    out = _Mapping()
    out.lines = {}
    out.line = node.start_mark.line + 1
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            hash(key)
        except TypeError:
            raise InventoryError(f"line {key_node.start_mark.line + 1}: a mapping key must be a scalar") from None
        if key in out:
            raise InventoryError(f"line {key_node.start_mark.line + 1}: duplicate key {key!r} "
                                 f"(first at line {out.lines[key]})")
        out[key] = loader.construct_object(value_node, deep=True)
        out.lines[key] = key_node.start_mark.line + 1
    return out


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def yaml_load(path: Path) -> Any:
    """Parse a YAML (or JSON) file; InventoryError names the file and line of a syntax error."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise InventoryError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
    except InventoryError as exc:
        raise InventoryError(f"{path}: {exc}") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise InventoryError(f"{where}: YAML syntax error: {exc.problem or exc}") from None
    except yaml.YAMLError as exc:
        raise InventoryError(f"{path}: YAML error: {exc}") from None


@dataclass
class Group:
    """An inventory group: its direct hosts, child groups, parents and own vars."""

    name: str
    hosts: list[str] = field(default_factory=list)
    children: list[str] = field(default_factory=list)
    parents: list[str] = field(default_factory=list)
    vars: dict[str, Any] = field(default_factory=dict)
    origins: dict[str, Origin] = field(default_factory=dict)


@dataclass
class Host:
    """An inventory host with its effective variables (after precedence) and their origins.

    + name: the inventory name; address() is ansible_host or the name.
    + groups: every group it belongs to, ``all`` and ancestors included, lowest precedence first.
    """

    name: str
    groups: list[str] = field(default_factory=list)
    vars: dict[str, Any] = field(default_factory=dict)
    origins: dict[str, Origin] = field(default_factory=dict)
    defined: Origin | None = None  # where the host first appears

    def address(self) -> str:
        """Where to connect: ansible_host, else the inventory name."""
        return str(self.vars.get("ansible_host") or self.name)

    def origin(self, key: str) -> str:
        """``file:line`` of a variable (of the host's definition when it has no such variable), for messages."""
        found = self.origins.get(key) or self.defined
        return str(found) if found else "(inventory)"


@dataclass
class Inventory:
    """A loaded inventory: its file, groups and hosts (in first-seen order)."""

    path: Path
    groups: dict[str, Group]
    hosts: dict[str, Host]

    def select(self, pattern: str | None = None) -> list[Host]:
        """Hosts matching an Ansible --limit pattern (None or ``all``: every host).

        A pattern is a list of host names, group names or globs separated by ``,`` or
        ``:``; ``!x`` excludes and ``&x`` intersects, as in Ansible. A name that
        matches nothing is an error (a typo must not silently select no hosts).
        """
        if not pattern or pattern == "all":
            return list(self.hosts.values())
        chosen: list[str] = []
        for term in [t.strip() for t in re.split(r"[,:]", pattern) if t.strip()]:
            op, name = (term[0], term[1:]) if term[0] in "!&" else ("", term)
            matched = self._match(name)
            if not matched:
                raise InventoryError(f"{self.path}: --limit {term!r} matches no host or group")
            if op == "!":
                chosen = [h for h in chosen if h not in matched]
            elif op == "&":
                chosen = [h for h in chosen if h in matched]
            else:
                chosen += [h for h in matched if h not in chosen]
        return [self.hosts[h] for h in self.hosts if h in chosen]

    def _match(self, name: str) -> list[str]:
        out: list[str] = []
        for group in self.groups.values():
            if fnmatch.fnmatchcase(group.name, name):
                out += [h for h in self._group_hosts(group.name) if h not in out]
        out += [h for h in self.hosts if fnmatch.fnmatchcase(h, name) and h not in out]
        return out

    def _group_hosts(self, name: str) -> Iterator[str]:
        group = self.groups[name]
        yield from group.hosts
        for child in group.children:
            yield from self._group_hosts(child)


def host_pattern_expand(pattern: str) -> list[str]:
    """Expand numeric ranges in a host name (``gw[01:03]`` -> gw01 gw02 gw03); zero padding is kept.

    >>> host_pattern_expand("gw[1:3].example.com")
    ['gw1.example.com', 'gw2.example.com', 'gw3.example.com']
    """
    match = _RANGE.search(pattern)
    if match is None:
        return [pattern]
    start, end, stride = match.group(1), match.group(2), int(match.group(3) or 1)
    width = len(start) if start.startswith("0") and len(start) > 1 else 0
    if int(end) < int(start) or stride < 1:
        raise InventoryError(f"bad host range {match.group(0)} in {pattern!r}")
    out = []
    for number in range(int(start), int(end) + 1, stride):
        head = pattern[:match.start()] + str(number).zfill(width)
        out += [head + rest for rest in host_pattern_expand(pattern[match.end():])]
    return out


class _Builder:
    """Walks the inventory file's groups, then applies group_vars/ and host_vars/."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.groups: dict[str, Group] = {"all": Group("all")}
        self.hosts: dict[str, Host] = {}
        self.host_file_vars: dict[str, list[tuple[str, Any, Origin]]] = {}

    def _vars(self, data: Any, where: str) -> list[tuple[str, Any, Origin]]:
        if data is None:
            return []
        if not isinstance(data, dict):
            raise InventoryError(f"{self.path}:{getattr(data, 'line', 0)}: {where} must be a mapping")
        lines = getattr(data, "lines", {})
        out = []
        for key, value in data.items():
            if not isinstance(key, str):
                raise InventoryError(f"{self.path}:{lines.get(key, 0)}: {where}: variable names are strings, "
                                     f"not {key!r}")
            out.append((key, value, Origin(self.path, lines.get(key, 0))))
        return out

    def group(self, name: str, data: Any, parent: str | None, line: int) -> None:
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", name):
            raise InventoryError(f"{self.path}:{line}: bad group name {name!r}")
        group = self.groups.setdefault(name, Group(name))
        if parent is not None and parent not in group.parents:
            group.parents.append(parent)
            self.groups[parent].children.append(name)
        if data is None:
            return
        if not isinstance(data, dict):
            raise InventoryError(f"{self.path}:{line}: group {name!r} must be a mapping of hosts, children, vars")
        lines = getattr(data, "lines", {})
        for key in data:
            if key not in ("hosts", "children", "vars"):
                raise InventoryError(f"{self.path}:{lines.get(key, line)}: group {name!r}: unknown key {key!r} "
                                     "(expected hosts, children or vars)")
        for key, value, origin in self._vars(data.get("vars"), f"vars of group {name!r}"):
            group.vars[key] = value
            group.origins[key] = origin
        hosts = data.get("hosts")
        if hosts is not None:
            if not isinstance(hosts, dict):
                raise InventoryError(f"{self.path}:{lines.get('hosts', line)}: hosts of group {name!r} "
                                     "must be a mapping of host names")
            host_lines = getattr(hosts, "lines", {})
            for pattern, host_data in hosts.items():
                for host_name in host_pattern_expand(str(pattern)):
                    self.host(host_name, host_data, name, host_lines.get(pattern, 0))
        children = data.get("children")
        if children is not None:
            if not isinstance(children, dict):
                raise InventoryError(f"{self.path}:{lines.get('children', line)}: children of group {name!r} "
                                     "must be a mapping of group names")
            child_lines = getattr(children, "lines", {})
            for child, child_data in children.items():
                self.group(child, child_data, name, child_lines.get(child, 0))

    def host(self, name: str, data: Any, group: str, line: int) -> None:
        if name in self.groups:
            raise InventoryError(f"{self.path}:{line}: {name!r} is both a host and a group")
        self.hosts.setdefault(name, Host(name, defined=Origin(self.path, line)))
        if name not in self.groups[group].hosts:
            self.groups[group].hosts.append(name)
        self.host_file_vars.setdefault(name, []).extend(self._vars(data, f"vars of host {name!r}"))

    def order(self) -> list[str]:
        """Groups by depth from ``all``, then ansible_group_priority, then name (Ansible's sort)."""
        depth: dict[str, int] = {}

        def walk(name: str, level: int, seen: tuple[str, ...]) -> None:
            if name in seen:
                raise InventoryError(f"{self.path}: group {name!r} is its own ancestor ({' > '.join(seen)})")
            depth[name] = max(depth.get(name, 0), level)
            for child in self.groups[name].children:
                walk(child, level + 1, (*seen, name))

        walk("all", 0, ())
        for name in self.groups:
            depth.setdefault(name, 1)

        def priority(name: str) -> int:
            value = self.groups[name].vars.get("ansible_group_priority", 1)
            return value if isinstance(value, int) else 1

        return sorted(self.groups, key=lambda n: (depth[n], priority(n), n))

    def host_groups(self, host: str) -> set[str]:
        found: set[str] = {"all"}
        todo = [g.name for g in self.groups.values() if host in g.hosts]
        while todo:
            name = todo.pop()
            if name not in found:
                found.add(name)
                todo += self.groups[name].parents
        return found

    def build(self) -> Inventory:
        order = self.order()
        group_files = {name: _vars_dir_load(self.path.parent / "group_vars", name) for name in order}
        for name, host in self.hosts.items():
            member = self.host_groups(name)
            host.groups = [g for g in order if g in member]
            layers: list[list[tuple[str, Any, Origin]]] = []
            layers += [[(k, v, self.groups[g].origins[k]) for k, v in self.groups[g].vars.items()]
                       for g in host.groups]
            layers.append(group_files["all"])
            layers += [group_files[g] for g in host.groups if g != "all"]
            layers.append(self.host_file_vars.get(name, []))
            layers.append(_vars_dir_load(self.path.parent / "host_vars", name))
            for layer in layers:
                for key, value, origin in layer:
                    host.vars[key] = value
                    host.origins[key] = origin
        return Inventory(self.path, self.groups, self.hosts)


def _vars_dir_load(directory: Path, name: str) -> list[tuple[str, Any, Origin]]:
    """Variables from group_vars/NAME or host_vars/NAME (file with an optional suffix, or a directory)."""
    files: list[Path] = []
    for suffix in _VAR_SUFFIXES:
        candidate = directory / f"{name}{suffix}"
        if candidate.is_file():
            files.append(candidate)
        elif suffix == "" and candidate.is_dir():
            files += sorted(p for p in candidate.iterdir() if p.is_file() and p.suffix in _VAR_SUFFIXES)
    out: list[tuple[str, Any, Origin]] = []
    for path in files:
        data = yaml_load(path)
        if data is None:
            continue
        if not isinstance(data, dict):
            raise InventoryError(f"{path}: variables must be a mapping")
        lines = getattr(data, "lines", {})
        for key, value in data.items():
            if not isinstance(key, str):
                raise InventoryError(f"{path}:{lines.get(key, 0)}: variable names are strings, not {key!r}")
            out.append((key, value, Origin(path, lines.get(key, 0))))
    return out


def inventory_load(path: Path | str) -> Inventory:
    """Load an inventory file with its group_vars/ and host_vars/ (see the module docstring).

    Raises InventoryError naming the file and line of the first problem.
    """
    path = Path(path)
    data = yaml_load(path)
    if data is None:
        raise InventoryError(f"{path}: the inventory is empty")
    if not isinstance(data, dict):
        raise InventoryError(f"{path}: an inventory is a mapping of groups (usually just 'all')")
    builder = _Builder(path)
    lines = getattr(data, "lines", {})
    for name, group_data in data.items():
        builder.group(name, group_data, None if name == "all" else "all", lines.get(name, 0))
    inventory = builder.build()
    if not inventory.hosts:
        raise InventoryError(f"{path}: the inventory has no hosts")
    return inventory
