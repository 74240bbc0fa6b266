"""The thin web layer: one module per protocol, errors mapped in one place."""
