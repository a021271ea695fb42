"""Threat workers: conditions under which a setup is rejected, each with a reason code."""
