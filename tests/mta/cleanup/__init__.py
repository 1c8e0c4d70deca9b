"""Tests for the cleanup daemon (mta.cleanup) and shared helpers for the local submission tests."""
