"""Tests of the customization tasks."""
