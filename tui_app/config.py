"""User settings: key remapping and theme, from a TOML file in the XDG config dir.

The file is `$DYNASCOPE_CONFIG` when set, else `<user config dir>/dynascope/config.toml` (platformdirs), e.g.
`~/.config/dynascope/config.toml`:

    theme = "textual-light"

    [keymap]
    "datamap.var_up" = "L"          # binding id = key(s), comma-separated for several
    "app.quit" = "ctrl+q"

Every binding of the app has an id (see `?` on any screen, or `dynascope` docs); `DYNASCOPE_KEYMAP` may also
hold overrides as `id=key;id=key`, applied after the file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from platformdirs import user_config_dir

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: no TOML reader in the standard library
    tomllib = None  # type: ignore[assignment]

CONFIG_ENV = "DYNASCOPE_CONFIG"
KEYMAP_ENV = "DYNASCOPE_KEYMAP"
THEME_ENV = "DYNASCOPE_THEME"


@dataclass
class Settings:
    keymap: dict[str, str] = field(default_factory=dict)
    theme: str | None = None
    path: Path | None = None
    problems: list[str] = field(default_factory=list)


def config_path() -> Path:
    env = os.environ.get(CONFIG_ENV)
    if env:
        return Path(env).expanduser()
    return Path(user_config_dir("dynascope", appauthor=False)) / "config.toml"


def load_settings(path: Path | None = None) -> Settings:
    """Read the settings; a broken file is reported (as a notification by the app), never fatal."""
    path = path or config_path()
    settings = Settings(path=path)
    if path.is_file() and tomllib is None:
        settings.problems.append(f"{path}: reading TOML needs Python 3.11+; using the default keys")
    elif path.is_file():
        data: dict[str, Any]
        try:
            data = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            settings.problems.append(f"{path}: {exc}; using the default keys")
            data = {}
        keymap = data.get("keymap", {})
        if isinstance(keymap, dict):
            settings.keymap.update({str(k): str(v) for k, v in keymap.items()})
        else:
            settings.problems.append(f"{path}: [keymap] must be a table of binding id = key")
        if isinstance(data.get("theme"), str):
            settings.theme = data["theme"]
    for item in os.environ.get(KEYMAP_ENV, "").split(";"):
        if "=" in item:
            key, _, value = item.partition("=")
            settings.keymap[key.strip()] = value.strip()
    if os.environ.get(THEME_ENV):
        settings.theme = os.environ[THEME_ENV]
    return settings
