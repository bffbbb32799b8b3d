"""The admin HTTP API (`provision serve`): thin over admin/operations.py, as the CLI is."""
