"""tix-time-processor: turns TiX condenser reports into usage, quality and Hurst results for tix-api."""

__version__ = "1.0.0"
