"""The Duo side: what to ask Duo, when, and the client that asks.

Pure (no I/O, no trio): ``paging`` (the paging rules of each log endpoint),
``cursors`` (where each endpoint continues, and its bytes on disk), ``pacing``
(the request budget and backoff) and ``clock`` (Duo's clock, from its answers'
``Date``).  I/O: ``client`` (duo_client in worker threads, and what its errors
mean) and ``discovery`` (an MSP parent's child accounts).
"""
