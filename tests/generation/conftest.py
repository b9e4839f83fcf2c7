from .test_openai_backend import flaky_server  # noqa: F401  (shared fixture)
