"""The openEO 0.0.2 dialect: the users' contract, frozen."""
