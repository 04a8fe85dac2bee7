"""The analysis: image bytes in, a result or a rejection out (decoding, quality gate, models). No cloud involved."""
