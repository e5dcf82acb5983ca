"""Pure tensor maths used by the modules (losses, scores, fusion), free of nn.Module state."""
