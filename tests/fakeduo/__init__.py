"""Tests of trio_dls.fakeduo."""
