"""Host configuration: ``lash.toml`` / ``[tool.lash]`` discovery, parsing, env overrides."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import attrs

from lash._contract.annotations import resolve_here
from lash._contract.modeloptions import ModelOptions
from lash._contract.modeloptions_check import model_options
from lash._contract.serialization import EnvStr, structure, validation_problems
from lash.errors import ConfigError, ValidationError

#: Environment variables lash reads (documented in docs/plugins.rst).
ENV_CONFIG = "LASH_CONFIG"
ENV_PLUGINS = "LASH_PLUGINS"
ENV_DISABLE_AUTOLOAD = "LASH_DISABLE_PLUGIN_AUTOLOAD"
ENV_STRICT = "LASH_STRICT_PLUGINS"
ENV_DISABLE = "LASH_DISABLE_PLUGINS"

_ENV_PREFIX = "$env:"
_TRUTHY = {"1", "true", "yes", "on"}


def _names(value: Iterable[str] | None) -> tuple[str, ...] | None:
    return None if value is None else _name_tuple(value)


def _name_tuple(value: Iterable[str]) -> tuple[str, ...]:
    # A bare string is one name, not a sequence of one-letter names.
    return (value,) if isinstance(value, str) else tuple(value)


def _builtins(value: str | Iterable[str] | None) -> str | tuple[str, ...] | None:
    # "default" is the one string value; anything else is a list of builtin names.
    if value is None or value == "default":
        return value
    if isinstance(value, str):
        raise ConfigError(
            f'`builtins` must be "default" or a list of builtin plugin names, got {value!r}'
        )
    return tuple(value)


def _options_repr(options: Mapping[str, Mapping[str, Any]]) -> str:
    return "{" + ", ".join(f"{name!r}: {{...}}" for name in options) + "}"


@attrs.frozen
class HostConfig:
    """A host's configuration, as read from ``lash.toml`` or ``[tool.lash]`` plus the environment.

    ``plugins`` is the allowlist and order (``None``: every installed plugin); a builtin plugin
    that is not listed loads only when ``builtins`` says so (``"default"``: every builtin; a list:
    those builtins; unset: every builtin without an allowlist, none with one). ``disable``
    removes plugins (``LASH_DISABLE_PLUGINS`` and ``lash --disable`` add to it);
    ``autoload=False`` loads third-party entry points only when they are named in ``plugins``;
    ``options`` maps a plugin name to its option values (``[options.<name>]``);
    ``model_options`` are the host's layer of :class:`lash.ModelOptions` (``[model_options]``).
    """

    strict: bool = False
    plugins: tuple[str, ...] | None = attrs.field(default=None, converter=_names)
    builtins: str | tuple[str, ...] | None = attrs.field(default=None, converter=_builtins)
    disable: tuple[str, ...] = attrs.field(default=(), converter=_name_tuple)
    autoload: bool = True
    store: str | None = None
    provider: str | None = None
    model: str | None = None
    # The repr names the plugins but never shows option values: they may hold secrets, and which
    # fields are secret is only known once each plugin's options class is loaded.
    options: Mapping[str, Mapping[str, Any]] = attrs.field(factory=dict, repr=_options_repr)
    model_options: ModelOptions = attrs.field(factory=ModelOptions, converter=model_options)
    #: The file the config came from (``None`` when built in code or no file was found).
    path: str | None = attrs.field(default=None, kw_only=True)

    __module__ = "lash"

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str] | None = None,
        *,
        cwd: str | os.PathLike[str] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> HostConfig:
        """Read the host config: ``path``, else ``$LASH_CONFIG``, else the nearest ``lash.toml`` or
        ``pyproject.toml`` with ``[tool.lash]`` from ``cwd`` upward; then apply the environment.

        :raises ConfigError: a file that is not UTF-8 (file, line, column, byte offset),
            malformed TOML (file, line, column), unknown keys, bad values, ``"$env:NAME"``
            naming an unset variable, or a ``path`` that does not exist.
        """
        env = os.environ if environ is None else environ
        found: Path | None
        if path is not None:
            found = Path(path)
        elif env.get(ENV_CONFIG):
            found = Path(env[ENV_CONFIG])
        else:
            # absolute(): the upward search must not stop at the top of a relative path.
            found = find_config_file(Path(cwd).absolute() if cwd is not None else Path.cwd())
        data: dict[str, Any] = {}
        if found is not None:
            data = read_config_file(found)
        config = from_mapping(data, path=str(found) if found else None, environ=env)
        return config.with_env(env)

    def with_env(self, environ: Mapping[str, str]) -> HostConfig:
        """Apply ``LASH_PLUGINS``, ``LASH_DISABLE_PLUGINS`` (added to ``disable``),
        ``LASH_DISABLE_PLUGIN_AUTOLOAD`` and ``LASH_STRICT_PLUGINS``."""
        changes: dict[str, Any] = {}
        listed = environ.get(ENV_PLUGINS)
        if listed is not None and listed.strip():
            changes["plugins"] = tuple(n.strip() for n in listed.split(",") if n.strip())
        off = [n.strip() for n in environ.get(ENV_DISABLE, "").split(",") if n.strip()]
        if off:
            changes["disable"] = (*self.disable, *(n for n in off if n not in self.disable))
        if environ.get(ENV_DISABLE_AUTOLOAD, "").strip().lower() in _TRUTHY:
            changes["autoload"] = False
        if environ.get(ENV_STRICT, "").strip().lower() in _TRUTHY:
            changes["strict"] = True
        return attrs.evolve(self, **changes) if changes else self


def find_config_file(start: Path) -> Path | None:
    """The nearest ``lash.toml`` (or ``pyproject.toml`` with ``[tool.lash]``) from ``start`` up."""
    for directory in (start, *start.parents):
        candidate = directory / "lash.toml"
        if candidate.is_file():
            return candidate
        pyproject = directory / "pyproject.toml"
        # A pyproject.toml without [tool.lash] belongs to some other tool: keep looking upward.
        if pyproject.is_file():
            tool = _parse(pyproject).get("tool")
            if isinstance(tool, Mapping) and "lash" in tool:
                return pyproject
    return None


_LOCATION = re.compile(r"\(at line (\d+), column (\d+)\)")
_END = re.compile(r"\(at end of document\)")


def _decode(path: Path, data: bytes) -> str:
    """The text of a config file; TOML is UTF-8 by definition, so anything else is an error.

    :raises ConfigError: naming the file, the line and column, and the byte offset of the first
        byte that is not UTF-8.
    """
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        # Everything before the bad byte decoded, so it locates the line and column exactly.
        before = data[: exc.start].decode("utf-8")
        bad = " ".join(f"0x{byte:02x}" for byte in data[exc.start : exc.end])
        plural = "s" if exc.end - exc.start > 1 else ""
        raise ConfigError(
            f"not UTF-8 text: byte{plural} {bad} at byte offset {exc.start} cannot be decoded "
            f"({exc.reason}); TOML files must be UTF-8, so re-save the file with UTF-8 encoding",
            path=str(path),
            line=before.count("\n") + 1,
            column=len(before) - (before.rfind("\n") + 1) + 1,
        ) from None


def _parse(path: Path) -> dict[str, Any]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read config file: {exc.strerror}", path=str(path)) from None
    text = _decode(path, data)
    import tomllib  # here, not at the top: only a start that finds a config file pays for it

    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # tomllib puts the position in the message; lift it into attributes.
        message = str(exc)
        match = _LOCATION.search(message)
        line = int(match.group(1)) if match else None
        column = int(match.group(2)) if match else None
        if match is None and _END.search(message):
            # "(at end of document)": point at the position just past the last character.
            line = text.count("\n") + 1
            column = len(text.rsplit("\n", 1)[-1]) + 1
        message = _END.sub("", _LOCATION.sub("", message)).strip()
        raise ConfigError(
            f"malformed TOML: {message}", path=str(path), line=line, column=column
        ) from None


def read_config_file(path: Path) -> dict[str, Any]:
    """The lash section of a config file: the whole ``lash.toml``, or ``[tool.lash]``."""
    if not path.is_file():
        raise ConfigError("config file not found (check --config or $LASH_CONFIG)", path=str(path))
    doc = _parse(path)
    if path.name == "pyproject.toml":
        tool = doc.get("tool")
        section = tool.get("lash") if isinstance(tool, Mapping) else None
        if section is None:
            raise ConfigError("pyproject.toml has no [tool.lash] section", path=str(path))
        if not isinstance(section, Mapping):
            raise ConfigError("`tool.lash` must be a table ([tool.lash])", path=str(path))
        return dict(section)
    return doc


def resolve_env(value: Any, environ: Mapping[str, str], where: str = "") -> Any:
    """Replace every ``"$env:NAME"`` string (at any depth) with the variable's value.

    :raises ConfigError: naming the key and the variable when it is not set.
    """
    if isinstance(value, str) and value.startswith(_ENV_PREFIX):
        name = value[len(_ENV_PREFIX) :]
        if name not in environ:
            raise ConfigError(
                f"{where or 'value'}: environment variable {name!r} is not set "
                f"(referenced as {value!r})"
            )
        return EnvStr(environ[name])
    if isinstance(value, Mapping):
        return {
            k: resolve_env(v, environ, f"{where}.{k}" if where else str(k))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [resolve_env(v, environ, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


@attrs.frozen
class _FileSchema:
    # The accepted top-level keys. Unknown keys are errors, so typos do not pass silently.
    strict: bool = False
    plugins: list[str] | None = None
    # "default" or a list of names: checked by HostConfig's converter (a union cattrs would guess).
    builtins: Any = None
    disable: list[str] = attrs.field(factory=list)
    autoload: bool = True
    store: str | None = None
    provider: str | None = None
    model: str | None = None
    options: dict[str, dict[str, Any]] = attrs.field(factory=dict)
    # Checked field by field by lash.ModelOptions (its errors name the field).
    model_options: dict[str, Any] = attrs.field(factory=dict)


def from_mapping(
    data: Mapping[str, Any],
    *,
    path: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> HostConfig:
    """Validate a config mapping (the parsed TOML) into a :class:`HostConfig`."""
    env = os.environ if environ is None else environ
    if isinstance(data.get("plugins"), Mapping):
        # `plugins` cannot be both the allowlist array and a table of sections in TOML.
        raise ConfigError(
            "`plugins` must be a list of plugin names (the allowlist and order); "
            "per-plugin options go in [options.<name>] tables",
            path=path,
        )
    try:
        resolved = resolve_env(dict(data), env)
    except ConfigError as exc:
        # Re-raise with the file, so the message says where the reference is.
        raise ConfigError(str(exc), path=path) from None
    try:
        # No file (or an empty one): the defaults, without building the structuring code that
        # validating a table needs (~3 ms of every `lash` command run outside a project).
        schema = structure(resolved, _FileSchema) if resolved else _FileSchema()
    except Exception as exc:
        problems = validation_problems(exc, resolved) or [str(exc)]
        raise ConfigError(
            "invalid configuration:\n" + "\n".join(f"  - {p}" for p in problems), path=path
        ) from None
    try:
        return HostConfig(
            strict=schema.strict,
            plugins=schema.plugins,
            builtins=schema.builtins,
            disable=schema.disable,
            autoload=schema.autoload,
            store=schema.store,
            provider=schema.provider,
            model=schema.model,
            options=schema.options,
            model_options=schema.model_options,
            path=path,
        )
    except ValidationError as exc:
        lines = "\n".join(f"  - {p}" for p in exc.problems)
        raise ConfigError(f"invalid [model_options]:\n{lines}", path=path) from None
    except ConfigError as exc:
        raise ConfigError(str(exc), path=path) from None


resolve_here(globals())
