"""Production-shaped runs on one machine: PostgreSQL, Redis, several web workers and bridges.

Not part of a deployment (which runs its own servers, see docs/deploy.md): a tool
for trying that shape (`make stack`) and for the tests that run on it.
"""
