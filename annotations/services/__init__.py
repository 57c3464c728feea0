"""Writes of the rating platform. Views, API views and tasks delegate here."""
