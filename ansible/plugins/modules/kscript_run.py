#!/usr/bin/python
# -*- coding: utf-8 -*-
from __future__ import annotations

DOCUMENTATION = r"""
---
module: kscript_run
short_description: Run a kscript script on the target (a node's stages, kubeadm's phases)
version_added: "0.1.0"
description:
  - Runs C(kscript run SCRIPT --output json) on the target and reads its JSON-lines stream
    (schema C(kscript.run/v1)); the task's C(changed) is the C(changed) of kscript's C(result)
    object, never guessed from text.
  - Check mode runs C(--dry-run); diff mode adds C(--diff) and returns each file's unified diff
    (and in a dry run each API object that would be sent) in Ansible's diff format. kscript
    never shows a diff of key material or credentials.
  - A failed run fails the task with the failing step, its message and the chain of causes.
options:
  binary:
    description: Path of the kscript binary on the target.
    type: path
    default: /usr/local/bin/kscript
  script:
    description: A script file on the target, or the name of a stock script (C(kscript scripts)).
    type: str
    required: true
  config:
    description: YAML configuration files on the target (C(-c)); later files win.
    type: list
    elements: path
    default: []
  set:
    description:
      - Settings (C(--set KEY=VALUE)), as a dict of dotted keys, or a list of C(KEY=VALUE)
        strings. Dict and list values are passed as YAML flow (JSON).
      - Shown in the task's result; put tokens and keys in O(secret_set).
    type: raw
  secret_set:
    description:
      - Settings like O(set) whose values are secrets (a bootstrap token, a certificate key), as a
        dict of dotted keys; they are never logged or returned. kscript reads them from a
        configuration file readable by root only (the last C(-c), removed after the run), not
        from its command line, which every user of the node can read.
    type: dict
  only:
    description: Run only these stages or steps (C(--only)).
    type: list
    elements: str
    default: []
  skip:
    description: Skip these stages or steps (C(--skip)).
    type: list
    elements: str
    default: []
  patches:
    description: A folder of kubeadm-style patches on the target (C(--patches)).
    type: path
  root:
    description: Render the node into this folder on the target instead of changing the host (C(--root)).
    type: path
  extra_args:
    description: More arguments for C(kscript run), for example C(--ignore-preflight-errors=all).
    type: list
    elements: str
    default: []
author:
  - kscript maintainers (!UNKNOWN)
notes:
  - Supports check mode (C(--dry-run)) and diff mode (C(--diff)).
  - kscript changes a real host and must run as root there (C(become)); with O(root) it needs no privileges.
attributes:
  check_mode:
    description: Can run in check mode and return changed status prediction without modifying target.
    support: full
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: full
"""

EXAMPLES = r"""
- name: Stages 1 and 2 of a worker (containerd, kubelet)
  kscript.kscript.kscript_run:
    script: worker.rhai
    only: [containerd, kubelet]

- name: Render the control plane into a folder for review
  kscript.kscript.kscript_run:
    script: control-plane.rhai
    root: /tmp/node-root
    set:
      nodeRegistration.name: cp-1
      localAPIEndpoint.advertiseAddress: 10.0.0.11

- name: Join a worker
  kscript.kscript.kscript_run:
    script: worker.rhai
    set:
      discovery.bootstrapToken.apiServerEndpoint: 10.0.0.11:6443
      discovery.bootstrapToken.caCertHashes: ["sha256:..."]
    secret_set:
      discovery.bootstrapToken.token: "{{ token }}"
"""

RETURN = r"""
changed_steps:
  description: The steps that changed something (or would, in check mode), as C(--only) names them.
  returned: always
  type: list
  elements: str
changes:
  description: The number of effects that changed something (kscript's C(result.changes)).
  returned: always
  type: int
failed_step:
  description: The step that failed, when one did.
  returned: always
  type: str
exit_code:
  description: kscript's exit code.
  returned: always
  type: int
mode:
  description: C(apply), C(render) or C(dry-run).
  returned: when the run started
  type: str
stages:
  description: The stages that ran, in order.
  returned: always
  type: list
  elements: str
messages:
  description: What the script printed (info, print).
  returned: always
  type: list
  elements: str
script_warnings:
  description: kscript's warnings (also shown as Ansible warnings).
  returned: always
  type: list
  elements: str
error:
  description: kscript's error object (step, kind, message, location, help, causes, frames).
  returned: on failure
  type: dict
cmd:
  description: The command run (O(secret_set) is a C(-c) file of the module's temporary folder, gone after the run).
  returned: always
  type: list
  elements: str
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.kscript.kscript.plugins.module_utils.kscript import (
    StreamError, ansible_diff, failure_message, parse_stream, run_command, set_pairs, summary, write_secret_config,
)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            binary=dict(type="path", default="/usr/local/bin/kscript"),
            script=dict(type="str", required=True),
            config=dict(type="list", elements="path", default=[]),
            set=dict(type="raw"),
            secret_set=dict(type="dict", no_log=True),
            only=dict(type="list", elements="str", default=[]),
            skip=dict(type="list", elements="str", default=[]),
            patches=dict(type="path"),
            root=dict(type="path"),
            extra_args=dict(type="list", elements="str", default=[]),
        ),
        supports_check_mode=True,
    )
    p = module.params
    if not os.path.exists(p["binary"]):
        module.fail_json(msg="no kscript binary at %s on this host: install it (the portable release) "
                             "or set the binary option" % p["binary"])
    try:
        sets = set_pairs(p["set"])
    except ValueError as e:
        module.fail_json(msg="set: %s" % e)
    secrets = list((p["secret_set"] or {}).items())
    config = list(p["config"])
    secret_file = None
    if secrets:
        secret_file = write_secret_config(module.tmpdir, secrets)
        config.append(secret_file)
    cmd = run_command(p["binary"], p["script"], config, sets, p["root"], p["only"], p["skip"], p["patches"],
                      check=module.check_mode, diff=module._diff, extra_args=p["extra_args"])
    try:
        rc, stdout, stderr = module.run_command(cmd)
    finally:
        if secret_file:
            os.remove(secret_file)
    try:
        events = parse_stream(stdout)
    except StreamError as e:
        module.fail_json(msg="kscript did not give its JSON stream: %s" % e, rc=rc, cmd=cmd,
                         line=e.line, stdout=stdout, stderr=stderr)

    s = summary(events)
    for text in s["script_warnings"]:
        module.warn(text)
    out = dict(
        changed=s["changed"], changes=s["changes"], failed_step=s["failed_step"],
        exit_code=s["exit_code"], changed_steps=s["changed_steps"], stages=s["stages"],
        messages=s["messages"], script_warnings=s["script_warnings"], cmd=cmd, rc=rc,
    )
    if "mode" in s:
        out["mode"] = s["mode"]
    if module._diff:
        out["diff"] = ansible_diff(events)
    if not s["ok"] or rc != s["exit_code"]:
        out["error"] = s["error"]
        out["stderr"] = stderr
        module.fail_json(msg=failure_message(s), **out)
    module.exit_json(**out)


if __name__ == "__main__":
    main()
