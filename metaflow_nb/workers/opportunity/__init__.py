"""Opportunity workers: candidate setups (direction and zone) per bar."""
