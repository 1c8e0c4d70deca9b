"""A Postfix-compatible mail transfer agent in Python, bundled with the harden tool."""

__version__ = "0.1.0"
