"""The tunebatch producer: a light CLI client (no TensorFlow at import)."""
