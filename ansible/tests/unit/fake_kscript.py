#!/usr/bin/env python3
# A FAKE kscript for the modules' unit tests: it records its arguments and prints what the test
# gave it, so the modules' reading of kscript's output is tested without a node. The real
# binary is run by the integration test (tests/cli/ansible.rs).
#   FAKE_KSCRIPT_LOG    a file; each call appends its arguments as one JSON line, and to
#                       FAKE_KSCRIPT_LOG.configs the text and mode of each -c file (they may be
#                       gone after the call)
#   FAKE_KSCRIPT_RUN    a file whose text `kscript run` prints; FAKE_KSCRIPT_RUN_RC its exit code
#   FAKE_KSCRIPT_STATUS a file whose text `kscript status` prints; FAKE_KSCRIPT_STATUS_RC
import json
import os
import sys

with open(os.environ["FAKE_KSCRIPT_LOG"], "a") as log:
    log.write(json.dumps(sys.argv[1:]) + "\n")
configs = {}
for flag, path in zip(sys.argv[1:], sys.argv[2:]):
    if flag == "-c" and os.path.exists(path):
        with open(path) as f:
            configs[path] = {"text": f.read(), "mode": oct(os.stat(path).st_mode & 0o777)}
with open(os.environ["FAKE_KSCRIPT_LOG"] + ".configs", "a") as log:
    log.write(json.dumps(configs) + "\n")
command = "STATUS" if sys.argv[1] == "status" else "RUN"
with open(os.environ["FAKE_KSCRIPT_" + command]) as f:
    sys.stdout.write(f.read())
sys.exit(int(os.environ.get("FAKE_KSCRIPT_%s_RC" % command, "0")))
