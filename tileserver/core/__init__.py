"""The core: catalog, process graphs, evaluator, cache and encoders. No HTTP in here."""
