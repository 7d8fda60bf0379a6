"""RecStack: contracts shared by offline (`models`) and online (`serving`) code, and the CLI."""

__version__ = "0.1.0"
