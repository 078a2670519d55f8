"""The stages of the pipeline, each a plain function that takes its ports."""
