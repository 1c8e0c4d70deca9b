"""Tests for mta.local (local(8) delivery)."""
