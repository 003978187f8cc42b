"""Helpers shared by the test tiers: certificate generation, fixture plugins for local services."""
