"""Tests of trio_dls.config."""
