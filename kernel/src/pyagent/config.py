"""Settings: keyword arguments, then ``pyagent.toml`` / ``[tool.pyagent]``, then environment variables.

That is the order of precedence (first wins). Files are looked up from the working directory
upwards; the first ``pyagent.toml`` or ``pyproject.toml`` with a ``[tool.pyagent]`` table is used.
"""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from pyagent.errors import ConfigurationError

ENV = {
    "model": "PYAGENT_MODEL",
    "router": "PYAGENT_ROUTER",
    "storage": "PYAGENT_STORAGE",
    "disable_plugins": "PYAGENT_DISABLE_PLUGINS",
    "strict_plugins": "PYAGENT_STRICT_PLUGINS",
    "monitors": "PYAGENT_MONITORS",
    "owner_id": "PYAGENT_OWNER_ID",
    "executor": "PYAGENT_EXECUTOR",
    "dask_address": "PYAGENT_DASK_ADDRESS",
}

# What a Dask scheduler address looks like: tcp://scheduler:8786, tls://10.0.0.5:8786, ...
_DASK_ADDRESS = re.compile(r"(?:(tcp|tls|ucx|ws|wss|inproc)://)?[^\s/:]+(?::\d+)?/?")


class MonitorSpec(BaseModel):
    """One monitor named in the settings: its registered kind and the options for its factory."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="the monitor kind, as registered by its plugin: console, slack, ...")
    options: dict[str, Any] = Field(default_factory=dict, description="keyword arguments for the monitor")

    @field_validator("name")
    @classmethod
    def _a_word(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]*", value):
            raise ValueError(f"monitor name {value!r} is not a monitor kind: use one like 'console' or 'prometheus'")
        return value


def monitor_specs(value: Any) -> list[MonitorSpec]:
    """Monitors as written in configuration, in any of its shapes, as a list of specs.

    - ``"console,prometheus"`` (the environment variable) or ``["console", "prometheus"]``;
    - tables by name, ``[tool.pyagent.monitors.prometheus]`` with ``port = 9464`` (an empty
      table, or ``true``, takes the defaults; ``false`` leaves it out);
    - a list of tables with ``name`` and the options, ``[[tool.pyagent.monitors]]``, which
      can name one kind twice (two Slack channels); strings and tables may be mixed.
    """
    if isinstance(value, MonitorSpec):
        return [value]
    if isinstance(value, str):
        return [MonitorSpec(name=part.strip()) for part in value.split(",") if part.strip()]
    if isinstance(value, dict):
        specs = []
        for name, options in value.items():
            if options is False:
                continue
            if options is True or options is None:
                options = {}
            if not isinstance(options, dict):
                raise ValueError(
                    f"the options of monitor {name!r} must be a table (e.g. [tool.pyagent.monitors.{name}] "
                    f"with port = 9464), or true for the defaults; got {options!r}"
                )
            specs.append(MonitorSpec(name=name, options=options))
        return specs
    if isinstance(value, (list, tuple)):
        specs = []
        for index, item in enumerate(value):
            if isinstance(item, (str, MonitorSpec)):
                specs.extend(monitor_specs(item))
            elif isinstance(item, dict):
                options = dict(item)
                name = options.pop("name", None)
                if not isinstance(name, str):
                    raise ValueError(
                        f"monitor {index} is a table without a name: write name = \"prometheus\" "
                        "(the monitor kind) beside its options"
                    )
                specs.append(MonitorSpec(name=name, options=options))
            else:
                raise ValueError(
                    f"monitor {index} is {item!r}: give a monitor name (\"console\") or a table "
                    "with name and options ({name = \"prometheus\", port = 9464})"
                )
        return specs
    raise ValueError(
        f"monitors must be a list of names or tables, or a table of tables by name; got {value!r}"
    )


class Settings(BaseModel):
    """Process-wide defaults."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str | None = Field(default=None, description="default model for instruction agents, e.g. 'openai:gpt-4o-mini'")
    router: str | None = Field(default=None, description="router used when a team names none")
    storage: str | None = Field(default=None, description="store URL for run history, e.g. 'sqlite://pyagent.db'")
    disable_plugins: list[str] = Field(default_factory=list, description="plugins not to load")
    strict_plugins: bool = Field(default=False, description="a plugin that fails to import raises")
    models: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="named model endpoints, e.g. [tool.pyagent.models.local] base_url = ...: "
                    "model='local:qwen2.5-7b' uses it (read by the model plugin named by its 'provider', default openai)")
    prices: dict[str, dict[str, float]] = Field(
        default_factory=dict,
        description="USD per million tokens by model, e.g. 'openai:gpt-4o-mini' = {input = 0.15, output = 0.6}")
    monitors: list[MonitorSpec] = Field(default_factory=list, description="monitors every run in the process reports to")
    owner_id: str | None = Field(default=None, description="the id this process claims runs under (default host:pid:random)")
    executor: str | None = Field(
        default=None, description="executor of workflows that name none, e.g. 'dask' (default: 'local')")
    dask_address: str | None = Field(
        default=None, description="Dask scheduler the 'dask' executor connects to, e.g. 'tcp://scheduler:8786' "
                                  "(unset: it starts a local cluster)")
    executors: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="options by executor name, e.g. [tool.pyagent.executors.dask] n_workers = 4")
    mcp: dict[str, Any] = Field(
        default_factory=dict,
        description="MCP servers by name ([tool.pyagent.mcp.servers.NAME] command or url, token_env, ...) "
                    "and what `pyagent mcp serve` requires ([tool.pyagent.mcp.serve]); read by pyagent-mcp")
    a2a: dict[str, Any] = Field(
        default_factory=dict,
        description="remote A2A agents by name ([tool.pyagent.a2a.remotes.NAME] url, token_env or "
                    "api_key_env) and what `pyagent a2a serve` requires ([tool.pyagent.a2a.serve]); read by pyagent-a2a")
    source: str = Field(default="defaults", description="where the file settings came from")

    @field_validator("disable_plugins", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [p.strip() for p in value.split(",") if p.strip()]
        return value

    @field_validator("monitors", mode="before")
    @classmethod
    def _monitors(cls, value: Any) -> Any:
        return monitor_specs(value)

    @field_validator("executor")
    @classmethod
    def _executor_name(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]*", value):
            raise ValueError(f"executor {value!r} is not an executor name: use one like 'local' or 'dask'")
        return value

    @field_validator("dask_address")
    @classmethod
    def _dask_address(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip()
        if not _DASK_ADDRESS.fullmatch(value):
            raise ValueError(
                f"{value!r} is not a Dask scheduler address: write it as tcp://host:8786 "
                "(schemes: tcp, tls, ucx, ws, wss, inproc)"
            )
        return value

    def executor_options(self, name: str) -> dict[str, Any]:
        """The configured options of executor ``name``; ``dask_address`` is the ``dask`` executor's ``address``."""
        options = dict(self.executors.get(name, {}))
        if name == "dask" and self.dask_address is not None:
            options.setdefault("address", self.dask_address)
        return options

    @field_validator("strict_plugins", mode="before")
    @classmethod
    def _flag(cls, value: Any) -> Any:
        if isinstance(value, str):
            lowered = value.strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off", ""):
                return False
        return value


def _file_settings(start: Path) -> tuple[dict[str, Any], str]:
    import tomllib

    for folder in [start, *start.parents]:
        for name in ("pyagent.toml", "pyproject.toml"):
            path = folder / name
            if not path.is_file():
                continue
            try:
                data = tomllib.loads(path.read_text())
            except (tomllib.TOMLDecodeError, OSError) as exc:
                raise ConfigurationError(f"{path} is not valid TOML: {exc}") from exc
            table = data.get("tool", {}).get("pyagent")
            if table is None and name == "pyagent.toml":
                table = data.get("pyagent", data)
            if table is not None:
                return dict(table), str(path)
    return {}, "defaults"


def load_settings(start: Path | None = None, **overrides: Any) -> Settings:
    """Settings from keyword arguments, then the nearest config file, then the environment."""
    values: dict[str, Any] = {}
    origin: dict[str, str] = {}  # key -> where its value came from, for error messages
    for key, var in ENV.items():
        if var in os.environ:
            values[key] = os.environ[var]
            origin[key] = f"environment variable {var}"
    from_file, source = _file_settings(start or Path.cwd())
    values.update(from_file)
    origin.update(dict.fromkeys(from_file, source))
    given = {k: v for k, v in overrides.items() if v is not None}
    values.update(given)
    origin.update(dict.fromkeys(given, "configure()"))
    try:
        return Settings(**values, source=source)
    except ValidationError as exc:
        def where(loc: tuple[int | str, ...]) -> str:
            key = ".".join(map(str, loc))
            came = origin.get(str(loc[0])) if loc else None
            return f"{key} (from {came})" if came is not None and came != source else key

        problems = "; ".join(f"{where(e['loc'])}: {e['msg']}" for e in exc.errors())
        valid = ", ".join(k for k in Settings.model_fields if k != "source")
        headline = "invalid pyagent settings" + ("" if source == "defaults" else f" from {source}")
        raise ConfigurationError(f"{headline}: {problems} (valid keys: {valid})") from None


_settings: Settings | None = None
_lock = threading.Lock()


def get_settings() -> Settings:
    """The process-wide settings, loaded on first use."""
    global _settings
    if _settings is None:
        with _lock:
            if _settings is None:
                _settings = load_settings()
    return _settings


def configure(**overrides: Any) -> Settings:
    """Set process-wide settings from keyword arguments (highest precedence); returns them."""
    global _settings
    with _lock:
        _settings = load_settings(**overrides)
    return _settings


def reset() -> None:
    """Forget loaded settings (they are read again on next use)."""
    global _settings
    _settings = None
