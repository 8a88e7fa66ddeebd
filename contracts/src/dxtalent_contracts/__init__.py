"""Public contracts of dxtalent: the CloudEvents envelope, v1 event models and the catalog schema.

Services share only this package. Everything here is pure data and validation: no I/O
except loading a catalog file that the caller names.
"""
