"""The live state of batches, tunes and runs: one interface, a local and a Redis backend."""
