"""The SIEM side: records in, bytes on the wire, acknowledgements out.

Pure: ``formats`` (JSON, CEF, syslog headers, repairs) and ``framing``
(newlines, octet counting, datagrams).  I/O: ``transports`` (TCP, TLS and UDP
connections) and ``senders`` (the sender task of each server).
"""
