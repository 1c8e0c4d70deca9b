"""Provision, harden and audit Postfix-style mail gateways (the automation around the bundled MTA)."""

__version__ = "0.1.0"
