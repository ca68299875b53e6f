"""Use cases: requesting, generating, charges, findings, automation, retention; each composes core and adapters."""
