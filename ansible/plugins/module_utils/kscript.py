# -*- coding: utf-8 -*-
# Shared by the kscript modules: the command line they build and the reading of
# `kscript run --output json` (schema kscript.run/v1, one JSON object per line, `result` last).
from __future__ import annotations

import json

RUN_SCHEMA = "kscript.run/v1"
STATUS_SCHEMA = "kscript.status/v1"


class StreamError(Exception):
    """kscript's stdout was not the JSON-lines stream it promises."""

    def __init__(self, message, line=None):
        super().__init__(message)
        self.line = line


def set_value(value):
    """One `--set` value as kscript reads it (YAML, typed like the default)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        # JSON is YAML's flow style: maps and lists pass whole.
        return json.dumps(value, sort_keys=True)
    if value is None:
        return "null"
    return str(value)


def set_pairs(values):
    """`set` as a module gets it (a dict, or a list of `K=V` strings / one-key dicts) as
    (key, value) pairs, in order."""
    if values is None:
        return []
    if isinstance(values, str):
        values = [values]
    if isinstance(values, dict):
        return [(str(k), set_value(v)) for k, v in values.items()]
    pairs = []
    for item in values:
        if isinstance(item, dict):
            pairs.extend((str(k), set_value(v)) for k, v in item.items())
        elif isinstance(item, str) and "=" in item:
            key, value = item.split("=", 1)
            pairs.append((key, value))
        else:
            raise ValueError("a set item must be KEY=VALUE or a one-key dict, not %r" % (item,))
    return pairs


def nest(pairs):
    """Dotted keys and their values as one nested document: ("a.b", 1) -> {"a": {"b": 1}}."""
    doc = {}
    for key, value in pairs:
        parts = key.split(".")
        node = doc
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[parts[-1]] = value
    return doc


def write_secret_config(tmpdir, pairs):
    """Settings whose values are secrets, as a configuration file for `-c` (JSON is YAML),
    readable by its owner only: a value on kscript's command line would be in
    /proc/PID/cmdline for every user of the node. Returns its path; the caller removes it."""
    import os
    import tempfile
    fd, path = tempfile.mkstemp(prefix="kscript-secrets-", suffix=".yaml", dir=tmpdir)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, json.dumps(nest(pairs), sort_keys=True).encode())
    finally:
        os.close(fd)
    return path


def common_args(config=None, sets=None, root=None):
    """The options run and status share: -c, --set, --root."""
    argv = []
    for path in config or []:
        argv += ["-c", path]
    for key, value in sets or []:
        argv += ["--set", "%s=%s" % (key, value)]
    if root:
        argv += ["--root", root]
    return argv


def run_command(binary, script, config=None, sets=None, root=None, only=None, skip=None,
                patches=None, check=False, diff=False, extra_args=None):
    """`kscript run SCRIPT --output json ...`, as a list of arguments."""
    argv = [binary, "run", script, "--output", "json"]
    argv += common_args(config, sets, root)
    for name in only or []:
        argv += ["--only", name]
    for name in skip or []:
        argv += ["--skip", name]
    if patches:
        argv += ["--patches", patches]
    if check:
        argv.append("--dry-run")
    if diff:
        argv.append("--diff")
    argv += list(extra_args or [])
    return argv


def parse_stream(stdout):
    """Reads a run's stream: every non-empty line must be a kscript.run/v1 object, and the last
    one the `result`. Returns the objects in order; raises StreamError naming the bad line."""
    events = []
    for number, line in enumerate(stdout.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError as e:
            raise StreamError("line %d of kscript's output is not JSON (%s)" % (number, e), line)
        if not isinstance(obj, dict) or "type" not in obj:
            raise StreamError("line %d of kscript's output is not a kscript.run object" % number, line)
        if obj.get("schema") != RUN_SCHEMA:
            raise StreamError("line %d has schema %r; this collection reads %s"
                              % (number, obj.get("schema"), RUN_SCHEMA), line)
        events.append(obj)
    if not events:
        raise StreamError("kscript printed nothing on stdout (no result object)")
    if events[-1].get("type") != "result":
        raise StreamError("kscript's output ended without a result object (last: %s)"
                          % events[-1].get("type"), json.dumps(events[-1]))
    return events


def ansible_diff(events):
    """The diffs of a --diff run in Ansible's diff format: one entry per effect with a diff
    (a file), and one per API object a dry run would send."""
    diffs = []
    for ev in events:
        if ev.get("type") != "step":
            continue
        for eff in ev.get("effects", []):
            target = eff.get("target", "")
            if "diff" in eff:
                diffs.append({
                    "before_header": "%s (%s)" % (target, ev["name"]),
                    "after_header": "%s (%s)" % (target, ev["name"]),
                    "prepared": eff["diff"],
                })
            elif "body" in eff:
                diffs.append({
                    "before_header": "%s (%s)" % (target, ev["name"]),
                    "after_header": "%s (%s, %s)" % (target, ev["name"], eff.get("change", "")),
                    "prepared": "".join("+" + l + "\n" for l in eff["body"].splitlines()),
                })
    return diffs


def summary(events):
    """What a task returns of a run: the result's fields, the steps that changed or failed,
    the script's messages and warnings, and the error (step, kind, message, causes)."""
    result = events[-1]
    out = {
        "ok": bool(result.get("ok")),
        "changed": bool(result.get("changed")),
        "changes": result.get("changes", 0),
        "failed_step": result.get("failed_step"),
        "exit_code": result.get("exit_code"),
        "changed_steps": [],
        "failed_steps": [],
        "messages": [],
        "script_warnings": [],
        "stages": [],
        "error": None,
    }
    for ev in events:
        kind = ev.get("type")
        if kind == "start":
            out["mode"] = ev.get("mode")
            out["kubernetes_version"] = ev.get("kubernetes_version")
        elif kind == "stage":
            out["stages"].append(ev.get("name"))
        elif kind == "step":
            if ev.get("outcome") == "changed":
                out["changed_steps"].append(ev["name"])
            elif ev.get("outcome") == "failed":
                out["failed_steps"].append(ev["name"])
        elif kind == "message":
            out["messages"].append(ev.get("text", ""))
        elif kind == "warning":
            out["script_warnings"].append(ev.get("text", ""))
        elif kind == "error":
            out["error"] = {k: ev.get(k) for k in
                            ("step", "kind", "message", "location", "help", "causes", "frames")}
    return out


def failure_message(s):
    """One line an operator reads first: the failing step, its message, the causes."""
    err = s.get("error") or {}
    step = err.get("step") or s.get("failed_step")
    msg = err.get("message") or "kscript failed (exit code %s) without an error object" % s.get("exit_code")
    text = ("%s: %s" % (step, msg)) if step and step not in msg else msg
    causes = err.get("causes") or []
    if causes:
        text += " (caused by: " + "; ".join(causes) + ")"
    if err.get("help"):
        text += " -- " + err["help"]
    return text


def _der_item(data, pos):
    """(tag, start of content, end of content) of the DER item at pos."""
    tag = data[pos]
    length = data[pos + 1]
    pos += 2
    if length & 0x80:
        n = length & 0x7F
        length = int.from_bytes(data[pos:pos + n], "big")
        pos += n
    return tag, pos, pos + length


def ca_pin(pem):
    """kubeadm's CA pin of a PEM certificate: sha256: and the hex SHA-256 of its
    SubjectPublicKeyInfo (DER), as `kubeadm join --discovery-token-ca-cert-hash` takes it."""
    import base64
    import hashlib
    body = pem.split("-----BEGIN CERTIFICATE-----", 1)[1].split("-----END CERTIFICATE-----", 1)[0]
    der = base64.b64decode("".join(body.split()))
    _tag, cert, _end = _der_item(der, 0)          # Certificate
    _tag, tbs, _end = _der_item(der, cert)        # TBSCertificate
    pos = tbs
    tag, _s, end = _der_item(der, pos)
    if tag == 0xA0:                               # [0] version
        pos = end
    for _field in range(5):                       # serial, signature, issuer, validity, subject
        _tag, _s, pos = _der_item(der, pos)
    _tag, _s, end = _der_item(der, pos)           # subjectPublicKeyInfo
    return "sha256:" + hashlib.sha256(der[pos:end]).hexdigest()


def new_token():
    """A bootstrap token, id.secret (6 and 16 characters of [a-z0-9]), as kubeadm makes them."""
    import secrets
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    return "%s.%s" % ("".join(secrets.choice(alphabet) for _i in range(6)),
                      "".join(secrets.choice(alphabet) for _i in range(16)))


def kubeconfig_server(text):
    """The first cluster's server of a kubeconfig (the line `server: ...`)."""
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("server:"):
            return line.split(":", 1)[1].strip().strip("'\"")
    return None
