"""openEO 1.x processes on arrays and numbers, run inside callbacks on whole numpy arrays."""
