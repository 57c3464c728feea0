from tests.api.conftest import client_as  # noqa: F401  (the API client fixture)
