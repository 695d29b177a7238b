"""Fixtures shared by all test layers."""
