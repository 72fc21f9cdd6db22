"""Log shipping: rotate the JSON logs, gzip them, upload them to Google Drive, delete only what Drive confirmed."""
