"""The character LSTM: presets, network, precision, registry, sampler and sampling runs, training
on windows or whole tunes, and scoring."""
