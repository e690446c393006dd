"""The character LSTM: presets, network, precision, registry, sampler, training and scoring."""
