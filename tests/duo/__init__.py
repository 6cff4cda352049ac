"""Tests of trio_dls.duo."""
