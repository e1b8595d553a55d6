"""The store: entries, their keys and attributes, staging and publish, catalogue, verify, gc.

Owns every byte under a store's root. Imports only the top-level kernel (params, validate,
errors); everything else in the package is built on top of it.
"""
