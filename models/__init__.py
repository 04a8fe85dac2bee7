"""Training, export and evaluation of the three classifiers the infer function serves."""
