"""The outside world: settings, Storage (Blob, Queue, Table), Microsoft (Partner Center, Graph, Entra), Arrow readers and file writers."""
