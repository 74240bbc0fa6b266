"""openEO 1.x processes on data cubes."""
