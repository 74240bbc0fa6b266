"""Zonal statistics: one value per region, date and band, and their tables."""
