"""The vocabulary every layer speaks: the labelled cube, the view (the grid a graph is
evaluated for) and the query pushed down a graph, with what is known of a cube before
reading it.
"""
