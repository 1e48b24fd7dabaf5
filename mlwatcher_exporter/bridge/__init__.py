"""Bridges from the exporter's metrics to other systems (Anodot)."""

from .anodot import AnodotBridge, FlushResult, ScrapeSource
from .config import (BridgeConfig, ConfigError, DeadLetterOptions, MappingOptions, SendOptions,
                     SpoolOptions, Target, load_config, read_token)
from .mapping import PointMapper
from .spool import Spool

__all__ = ["AnodotBridge", "FlushResult", "BridgeConfig", "ConfigError", "Target", "load_config",
           "read_token", "PointMapper", "MappingOptions", "SendOptions", "SpoolOptions",
           "DeadLetterOptions", "ScrapeSource", "Spool"]
