"""A river online model learning from a stream, precision/recall watched over windows, with driftcar."""
