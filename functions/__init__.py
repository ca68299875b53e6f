"""Thin trigger adapters: parse input, call `shared`, shape the output. No business logic here."""
