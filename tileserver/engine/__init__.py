"""The evaluator: a graph and a view in, the values for that view out."""
