"""A typer group whose commands are imported when one is asked for, as click's docs describe for lazily
loaded subcommands: `clarion trigger` imports clarion/cli/ops.py, not SQLAlchemy, the campaign model and
every provider that the other commands need (a second saved at every start, where it counts on the night).

Each module of clarion/cli/ declares its commands on its own typer app (`commands = command_group()`);
clarion/cli/main.py names every command and the module it lives in, in the order `clarion --help` lists
them. The group's `commands` is a mapping whose names are known without importing anything; reading a
command (running it, its `--help`, its parameters) imports its module, and listing them all (`clarion
--help`, tests walking the application) imports every module. A module whose commands differ from the
names given for it is a bug, said when it is loaded.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping, MutableMapping
from typing import Any, ClassVar

import typer
import typer.main
from typer.core import TyperGroup

Command = Any  # a click command (typer's own copy of click, or click itself in older typers)


class LazyCommands(MutableMapping[str, Command]):
    """Command name -> click command, each built from its module the first time it is read."""

    def __init__(self, modules: Mapping[str, str], loaded: Mapping[str, Command] | None = None) -> None:
        loaded = dict(loaded or {})
        self._modules = {**dict.fromkeys(loaded, ""), **modules}  # name -> module path, in listing order
        self._loaded: dict[str, Command] = loaded

    def _load(self, module: str) -> None:
        app = getattr(importlib.import_module(module), "commands", None)
        if not isinstance(app, typer.Typer):
            raise RuntimeError(f"{module} declares no `commands = command_group()`")
        found = typer.main.get_group(app).commands
        expected = {name for name, where in self._modules.items() if where == module}
        if set(found) != expected:
            raise RuntimeError(
                f"{module} declares the commands {sorted(found)}, but clarion/cli/main.py names "
                f"{sorted(expected)} for it: keep COMMANDS in step with the module"
            )
        self._loaded.update(found)

    def __getitem__(self, name: str) -> Command:
        if name not in self._loaded:
            if name not in self._modules:
                raise KeyError(name)
            self._load(self._modules[name])
        return self._loaded[name]

    def __setitem__(self, name: str, command: Command) -> None:
        self._loaded[name] = command
        self._modules.setdefault(name, "")

    def __delitem__(self, name: str) -> None:
        self._loaded.pop(name, None)
        del self._modules[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._modules)

    def __len__(self) -> int:
        return len(self._modules)

    def __contains__(self, name: object) -> bool:
        return name in self._modules


class LazyGroup(TyperGroup):
    """A TyperGroup whose `commands` are LazyCommands over `modules` (set by a subclass)."""

    modules: ClassVar[Mapping[str, str]] = {}

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        self.commands = LazyCommands(self.modules, loaded=self.commands)
