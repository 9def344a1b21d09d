"""``improv serve``: a repository over HTTP (FastAPI), for people, dashboards
and other sites: a REST API to search, fetch and cite at any snapshot, token-
scoped writes, and the store protocol that push, pull and clone speak.

Needs the ``service`` extra (``pip install 'improv_vcs[service]'``).
"""
