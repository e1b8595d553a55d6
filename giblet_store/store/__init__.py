"""The store: entries, their keys and attributes, staging and publish, catalogue, verify, gc.

Owns every byte under a store's root. Every module here reads, writes, lists and deletes through
:mod:`giblet_store.store.storage` (``store.storage``), never through another module's private members. Imports only the top-level kernel (params, validate,
errors); everything else in the package is built on top of it.
"""
