"""Tests of trio_dls.siem."""
