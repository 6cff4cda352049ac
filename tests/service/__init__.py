"""Tests of running as a service: systemd notifications, the status line."""
