"""artnet: when, where and what a European painting (1401-1900) is, from its pixels alone."""

__version__ = "0.2.0"
