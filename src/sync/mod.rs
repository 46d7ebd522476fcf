//! Sync of accepted labels with a shared store (a folder or an S3-compatible bucket).
