"""The cache tiers: node results in memory (LRU bounded in bytes), the shared tier (disk or
Redis) and its codec.
"""
