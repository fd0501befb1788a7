"""Pure tensor post-processing, network outputs -> PanopticResult: PanoNet (``panonet``,
with ``grouped_meanshift``), CIAE (``ciae``) and non-maximum suppression (``nms``);
``meanshift`` is the per-group flat-kernel mean-shift, kept as the tests' reference and
for the benchmark."""
