"""Drop-in layers, the T5 encoder-decoder and the research's presets."""
