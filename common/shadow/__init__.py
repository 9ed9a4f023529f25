"""Shadow evaluation by replay: a candidate run on the inputs production served."""
