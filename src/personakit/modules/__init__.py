"""Neural building blocks (nn.Module): style extractor, style-enhanced decoder, low-rank encoders, projectors."""
