"""Helper for test_kill_and_resume: one process of a run that may be killed mid-graph.

usage: python -m tests.resume_script CHECKPOINT IMAGE CALLS_FILE (kill|finish) [THREAD_ID]

CHECKPOINT: a SQLite file or a postgresql:// URL.
"""

import json
import os
import signal
import sys

os.environ["HF_HUB_OFFLINE"] = "1"

from redgraph.graphs import RunContext, ask  # noqa: E402
from tests.conftest import tiny  # noqa: E402
from tests.test_graph import ScriptedCritic, ScriptedReasoner  # noqa: E402

checkpoint, image, calls_file, mode = sys.argv[1:5]
thread = sys.argv[5] if len(sys.argv) > 5 else "resumable"


class CountingReasoner(ScriptedReasoner):
    def write(self, *args, **kwargs):
        with open(calls_file, "a") as handle:
            handle.write("reason\n")
        return super().write(*args, **kwargs)


class KillingCritic(ScriptedCritic):
    def review(self, image, question, rationales):
        os.kill(os.getpid(), signal.SIGKILL)  # the process dies mid-run, as under `kill -9`


critic = KillingCritic({}) if mode == "kill" else ScriptedCritic({"The circle is red.": 0.9})
context = RunContext(answerer=tiny("llava_clip"), reasoner=CountingReasoner([["The circle is red."]]), critic=critic,
                     max_new_tokens=3)
result = ask(image, "What colour is the circle?", context, checkpoint=checkpoint, thread_id=thread)
print(json.dumps({"answer": result.answer, "nodes": [e.node for e in result.trace.events]}))
