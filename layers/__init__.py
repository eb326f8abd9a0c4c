"""Lambda dependency layers: requirement files and the builder that makes them without Docker."""
