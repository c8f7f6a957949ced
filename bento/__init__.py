"""The BentoML service that serves each dataset's champion model over HTTP."""
