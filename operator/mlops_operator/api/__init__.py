"""Pydantic models of the mlops.dev API; the CRDs are generated from them."""
