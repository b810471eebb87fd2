"""The test suite (a package, so that its helpers import as tests.* before any installed package of that name)."""
