"""Pure tensor post-processing: network outputs -> PanopticResult."""
