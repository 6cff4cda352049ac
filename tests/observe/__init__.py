"""Tests of trio_dls.observe."""
