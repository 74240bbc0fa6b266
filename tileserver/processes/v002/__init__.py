"""The openEO 0.0.2 processes, written as translations into 1.x nodes where they can be."""
