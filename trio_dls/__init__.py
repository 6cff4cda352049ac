"""trio-dls: Duo Security logs to a SIEM, correctly and without losing a record."""

__version__ = "0.1.0"
