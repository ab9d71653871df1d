"""Tests of the image access layer."""
