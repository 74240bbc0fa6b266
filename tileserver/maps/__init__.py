"""A job as something served: tile matrix sets, coverage descriptions, encoded responses
through the cache tiers.
"""
