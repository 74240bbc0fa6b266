"""What the tests share: synthetic catalogs, numpy references, servers started in threads
or subprocesses, hostile-value tables. Fixtures live in the ``conftest.py`` of the level
that shares them; no test module imports another."""
