"""REST API of the rating platform: one APIView per use case."""
