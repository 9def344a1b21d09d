"""Append-only provenance: records of many kinds attached to images."""
