"""Where artifacts live: one interface over a local directory and an S3 bucket."""
