"""Process graphs: the node types (the internal representation), the openEO 1.x parser, the
0.0.2 front-end, user-defined processes and the official process descriptions. No evaluation
here.
"""
