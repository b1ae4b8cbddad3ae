"""Tests of the bundled demo model family (easel.zoo)."""
