from tests.api.conftest import api, client_as  # noqa: F401  (API client fixtures)
