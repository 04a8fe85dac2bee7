"""Adapters to Google Cloud: Firestore (jobs, quotas), Cloud Storage (photos), Cloud Tasks (deliveries)."""
