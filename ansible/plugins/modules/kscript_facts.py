#!/usr/bin/python
# -*- coding: utf-8 -*-
from __future__ import annotations

DOCUMENTATION = r"""
---
module: kscript_facts
short_description: A node's kscript status, and on a control plane the join material, as host facts
version_added: "0.1.0"
description:
  - Sets C(kscript_status) to C(kscript status --output json) of the node (schema
    C(kscript.status/v1)), C(kscript_done) to whether the node reached its script's last stage,
    and C(kscript_joined) to whether it is in the cluster, that is whether every file of its stage
    C(init) (control-plane.rhai) or C(join) (worker.rhai) is there. A joined node needs no join
    material, even while a component of that stage or its last stage (the pod network) is
    still to come.
  - With O(join), on a control plane, sets C(kscript_join) to what other nodes join with,
    C(api_server_endpoint) (host:port) and C(server) (from admin.conf), a fresh bootstrap
    C(token) stored by C(kscript run token.rhai), C(ca_cert_hashes) (the CA pin of the
    cluster CA), and with O(upload_certs) the C(certificate_key) that opens
    kube-system/kubeadm-certs, after C(init/upload-certs) ran again so the Secret is fresh.
  - The token and the certificate key are credentials; run this module with C(no_log) when
    O(join) is set (the role does).
options:
  binary:
    description: Path of the kscript binary on the target.
    type: path
    default: /usr/local/bin/kscript
  script:
    description: The script that builds this node; default, detected from the node.
    type: str
  config:
    description: YAML configuration files on the target (C(-c)).
    type: list
    elements: path
    default: []
  set:
    description: Settings (C(--set)), a dict of dotted keys or a list of C(KEY=VALUE).
    type: raw
  root:
    description: A folder rendered with C(kscript run --root); read it instead of the host.
    type: path
  timeout:
    description: Seconds each request of C(kscript status) to the runtime or API server may take.
    type: int
    default: 5
  join:
    description: Also make and return the join material (a control plane only).
    type: bool
    default: false
  upload_certs:
    description: With O(join), upload the shared certificates again and return the certificate key.
    type: bool
    default: false
  token_ttl:
    description: The lifetime of the new bootstrap token.
    type: str
    default: 2h0m0s
  certificates_dir:
    description: Where the cluster CA is (C(certificatesDir)).
    type: path
    default: /etc/kubernetes/pki
author:
  - kscript maintainers (!UNKNOWN)
attributes:
  check_mode:
    description: Can run in check mode and return changed status prediction without modifying target.
    support: full
    details: In check mode the token is made but not stored (C(token_stored) is false).
"""

EXAMPLES = r"""
- name: The node's status
  kscript.kscript.kscript_facts:

- name: Join material, for the other hosts (hostvars[cp].kscript_join)
  kscript.kscript.kscript_facts:
    join: true
    upload_certs: true
  no_log: true
"""

RETURN = r"""
ansible_facts:
  description: C(kscript_status), C(kscript_done), C(kscript_joined), and with O(join) C(kscript_join).
  returned: always
  type: dict
"""

import json
import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.kscript.kscript.plugins.module_utils.kscript import (
    STATUS_SCHEMA, StreamError, ca_pin, common_args, failure_message, kubeconfig_server, new_token,
    parse_stream, run_command, set_pairs, summary, write_secret_config,
)


# The stage that puts a node in the cluster: init on the first control plane, join elsewhere.
JOIN_STAGES = ("init", "join")


def joined(status, done):
    """Whether the node is in the cluster: its init or join stage ran and every file of it is
    there (the kubelet's kubeconfig among them). A component of that stage not running yet (kube-proxy on
    a busy cluster) is the cluster's to settle, not a reason to join again. A script without
    either stage (a fork that renamed them): when it reached its last stage."""
    stages = [s for s in status.get("stages") or [] if s.get("name") in JOIN_STAGES]
    if not stages:
        return done
    return all(s.get("complete") is True
               or not [m for m in s.get("missing") or [] if m.get("kind") in ("file", "not-run")]
               for s in stages)


def under(root, path):
    return os.path.join(root, path.lstrip("/")) if root else path


def run_kscript(module, argv, secret_file=None):
    """Runs a `kscript run` and returns its summary; fails the task when it fails. The
    `secret_file` (a -c of argv) is removed after the run."""
    try:
        rc, stdout, stderr = module.run_command(argv)
    finally:
        if secret_file:
            os.remove(secret_file)
    shown = argv
    try:
        s = summary(parse_stream(stdout))
    except StreamError as e:
        module.fail_json(msg="kscript did not give its JSON stream: %s" % e, cmd=shown, rc=rc, stderr=stderr)
    if not s["ok"]:
        module.fail_json(msg=failure_message(s), cmd=shown, rc=rc, error=s["error"],
                         failed_step=s["failed_step"])
    return s


def main():
    module = AnsibleModule(
        argument_spec=dict(
            binary=dict(type="path", default="/usr/local/bin/kscript"),
            script=dict(type="str"),
            config=dict(type="list", elements="path", default=[]),
            set=dict(type="raw"),
            root=dict(type="path"),
            timeout=dict(type="int", default=5),
            join=dict(type="bool", default=False),
            upload_certs=dict(type="bool", default=False),
            token_ttl=dict(type="str", default="2h0m0s", no_log=False),
            certificates_dir=dict(type="path", default="/etc/kubernetes/pki"),
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

    if p["root"] and not os.path.isdir(p["root"]) and not p["join"]:
        # A render that has not happened yet: nothing built, nothing to measure.
        module.exit_json(changed=False, ansible_facts=dict(kscript_status=None, kscript_done=False,
                                                           kscript_joined=False))

    argv = [p["binary"], "status"] + ([p["script"]] if p["script"] else [])
    argv += common_args(p["config"], sets, p["root"]) + ["--output", "json", "--timeout", str(p["timeout"])]
    rc, stdout, stderr = module.run_command(argv)
    try:
        status = json.loads(stdout)
    except ValueError:
        module.fail_json(msg="kscript status did not print its JSON document (exit code %d): %s"
                             % (rc, (stderr or stdout).strip()), cmd=argv, rc=rc)
    if rc not in (0, 1) or status.get("schema") != STATUS_SCHEMA:
        module.fail_json(msg="kscript status failed (exit code %d): %s" % (rc, (stderr or stdout).strip()),
                         cmd=argv, rc=rc)
    facts = dict(kscript_status=status, kscript_done=rc == 0, kscript_joined=joined(status, rc == 0))
    changed = False

    if p["join"]:
        admin = under(p["root"], "/etc/kubernetes/admin.conf")
        ca = under(p["root"], os.path.join(p["certificates_dir"], "ca.crt"))
        for path, what in ((admin, "admin.conf"), (ca, "the cluster CA")):
            if not os.path.exists(path):
                module.fail_json(msg="no %s at %s: join material comes from a control plane after "
                                     "init (control_plane_init first)" % (what, path))
        with open(admin) as f:
            server = kubeconfig_server(f.read())
        with open(ca) as f:
            try:
                pin = ca_pin(f.read())
            except (IndexError, ValueError) as e:
                module.fail_json(msg="%s is not a PEM certificate (%s): the cluster CA is pinned by its public key"
                                     % (ca, e))
        if not server:
            module.fail_json(msg="%s names no server" % admin)
        token = new_token()
        material = dict(server=server, api_server_endpoint=server.split("://", 1)[-1],
                        ca_cert_hashes=[pin], token=token, token_stored=not module.check_mode)
        # The token reaches kscript in a file readable by root only, not on its command line.
        tokens = [{"token": token, "ttl": p["token_ttl"], "description": "kscript.kscript collection"}]
        secret_file = write_secret_config(module.tmpdir, [("bootstrapTokens", tokens)])
        run = run_command(p["binary"], "token.rhai", p["config"] + [secret_file], sets, p["root"],
                          check=module.check_mode)
        changed = run_kscript(module, run, secret_file)["changed"] or changed
        if p["upload_certs"]:
            run = run_command(p["binary"], "control-plane.rhai", p["config"],
                              sets + [("kscript.uploadCerts", "true")], p["root"],
                              only=["init/upload-certs"], check=module.check_mode)
            changed = run_kscript(module, run)["changed"] or changed
            key_file = under(p["root"], "/var/lib/kscript/certificate-key")
            if os.path.exists(key_file):
                with open(key_file) as f:
                    material["certificate_key"] = f.read().strip()
            else:
                configured = dict(sets).get("certificateKey")
                if not configured:
                    module.fail_json(msg="upload_certs: no certificate key at %s and none configured "
                                         "(certificateKey)" % key_file)
                material["certificate_key"] = configured
        facts["kscript_join"] = material
    module.exit_json(changed=changed, ansible_facts=facts)


if __name__ == "__main__":
    main()
