"""Tests of the customization engine (mirrors the customization package)."""
