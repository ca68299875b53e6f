"""The domain and its adapters, importable and testable without azure.functions."""
