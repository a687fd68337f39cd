"""What the state tests share. Each test holds the run's lease as the executor `EXECUTOR` (a run made with
`make_run(..., leased_by=EXECUTOR)`) and calls one handler of orchestrator/engine/states/ directly, one step
at a time, with the context `make_ctx` builds (the scripted model, the configured tools).

Every "does not happen" (no turn burnt on a stop, no call dispatched after it) sits next to proof that it
could: each handler's normal path is tested too.
"""

from __future__ import annotations

from orchestrator.engine.context import Interrupt, StepContext
from orchestrator.models import Run
from orchestrator.providers.scripted import ScriptedProvider
from orchestrator.tools.registry import get_registry

EXECUTOR = "test-executor"


def make_ctx(run: Run) -> StepContext:
    return StepContext(run_id=run.id, executor_id=EXECUTOR, interrupt=Interrupt(), provider=ScriptedProvider(),
                       tools=get_registry())
