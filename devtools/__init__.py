"""What the tests and the benchmarks both need to drive the harness from outside: server processes, throwaway
PostgreSQL and Redis, the HTTP and WebSocket API clients, polling with a deadline, and facts about the
machine. One copy, so a change to how a server starts or stops is made once. Imports nothing from pytest
(devtools/screenshots.py uses it too) and nothing from `tests`.
"""
