"""Common code of the skin-lesion analysis service: domain, pipeline, adapters and configuration."""
