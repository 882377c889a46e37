"""A scikit-learn model served over HTTP (aiohttp) with the driftcar hook; labels arrive later by request id."""
