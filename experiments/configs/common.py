"""Helpers shared by the config files: choosing a preset by name."""

from __future__ import annotations

from typing import Callable, Mapping

import ml_collections

from selfconsume.errors import ConfigError

PRESETS = ("", "smoke", "paper")


def apply_preset(config: ml_collections.ConfigDict, preset: str,
                 presets: Mapping[str, Callable[[ml_collections.ConfigDict], None]]
                 ) -> ml_collections.ConfigDict:
  """Applies the preset named `preset` (the text after ':' in --config) to `config`.

  `presets` maps each non-default preset name to a function that edits the config in place.
  An unknown name is a ConfigError that lists the known ones.
  """
  preset = (preset or "").strip()
  if preset and preset not in presets:
    known = ", ".join(repr(p) for p in ("",) + tuple(presets))
    raise ConfigError(f"unknown preset {preset!r} for experiment "
                      f"{config.get('experiment', '?')!r}; known presets: {known}")
  if preset:
    presets[preset](config)
  config.preset = preset
  return config
