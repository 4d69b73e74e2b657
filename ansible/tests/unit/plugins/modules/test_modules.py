# Unit tests of kscript_run and kscript_facts: each module runs as Ansible runs it (a process
# given its arguments as JSON), against tests/unit/fake_kscript.py, a FAKE kscript that prints
# the stream a test gives it. Run: python3 -m unittest discover -s ansible/tests/unit -t ansible/tests/unit
# (or pytest). Needs ansible-core importable.
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

UNIT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COLLECTION = os.path.dirname(os.path.dirname(UNIT))
FAKE = os.path.join(UNIT, "fake_kscript.py")
S = "kscript.run/v1"


def ev(type_, **fields):
    return json.dumps(dict(type=type_, schema=S, **fields))


def result(ok=True, changed=False, changes=0, failed_step=None, exit_code=0):
    return ev("result", ok=ok, changed=changed, changes=changes, failed_step=failed_step, exit_code=exit_code)


START = ev("start", script="worker.rhai", builtin=True, mode="apply", root="/", kubernetes_version="v1.37.0")
STAGE = ev("stage", number=1, total=4, name="containerd", description="containerd")
FILE_DIFF = "--- a/etc/sysctl.d/k8s.conf\n+++ b/etc/sysctl.d/k8s.conf\n@@ -0,0 +1 @@\n+net.ipv4.ip_forward = 1\n"
STEP_CHANGED = ev("step", name="containerd/sysctl", stage="containerd", handler=False, outcome="changed",
                  note="/etc/sysctl.d/k8s.conf",
                  effects=[{"sign": "+", "change": "create", "target": "/etc/sysctl.d/k8s.conf",
                            "detail": "0644, 24 bytes", "diff": FILE_DIFF},
                           {"sign": "+", "change": "create", "target": "kube-system/ConfigMap/x",
                            "detail": "recorded", "body": "kind: ConfigMap\nname: x"}])
STEP_OK = ev("step", name="containerd/swap", stage="containerd", handler=False, outcome="ok", note="", effects=[])


class ModuleCase(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="kscript-ansible-unit-")
        self.addCleanup(shutil.rmtree, self.tmp)
        # The collection importable as ansible_collections.kscript.kscript.
        ns = os.path.join(self.tmp, "collections", "ansible_collections", "kscript")
        os.makedirs(ns)
        os.symlink(COLLECTION, os.path.join(ns, "kscript"))
        self.log = os.path.join(self.tmp, "calls.jsonl")
        # The module's process imports the collection from there, and ansible from where this
        # process has it (ansible-test units puts it on a path of its own).
        import ansible
        paths = [os.path.join(self.tmp, "collections"), os.path.dirname(os.path.dirname(ansible.__file__))]
        paths += [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
        self.env = dict(os.environ, FAKE_KSCRIPT_LOG=self.log, PYTHONPATH=os.pathsep.join(paths))

    def give(self, command, text, rc=0):
        path = os.path.join(self.tmp, command.lower())
        with open(path, "w") as f:
            f.write(text)
        self.env["FAKE_KSCRIPT_" + command] = path
        self.env["FAKE_KSCRIPT_%s_RC" % command] = str(rc)

    def module(self, name, check=False, diff=False, **args):
        args.setdefault("binary", FAKE)
        args.update(_ansible_check_mode=check, _ansible_diff=diff)
        path = os.path.join(self.tmp, "args.json")
        with open(path, "w") as f:
            json.dump({"ANSIBLE_MODULE_ARGS": args}, f)
        src = os.path.join(COLLECTION, "plugins", "modules", name + ".py")
        p = subprocess.run([sys.executable, src, path], env=self.env, capture_output=True, text=True, check=False)
        try:
            return json.loads(p.stdout), p.stdout
        except ValueError:
            self.fail("the module printed no JSON: %s %s" % (p.stdout, p.stderr))

    def calls(self):
        with open(self.log) as f:
            return [json.loads(line) for line in f]

    def configs(self):
        """Each call's -c files as the fake kscript saw them: {path: {text, mode}}."""
        with open(self.log + ".configs") as f:
            return [json.loads(line) for line in f]


class KscriptRun(ModuleCase):
    def test_changed_follows_the_result_and_options_become_flags(self):
        self.give("RUN", "\n".join([START, STAGE, STEP_CHANGED, STEP_OK, result(changed=True, changes=2)]) + "\n")
        out, _raw = self.module("kscript_run", script="worker.rhai", config=["/etc/a.yaml", "/etc/b.yaml"],
                                set={"nodeRegistration.name": "w1", "kscript.uploadCerts": True,
                                     "discovery.bootstrapToken.caCertHashes": ["sha256:ab"]},
                                only=["containerd", "kubelet"], skip=["containerd/swap"], patches="/p")
        self.assertFalse(out.get("failed"), out)
        self.assertTrue(out["changed"])
        self.assertEqual(out["changes"], 2)
        self.assertEqual(out["changed_steps"], ["containerd/sysctl"])
        self.assertEqual(out["stages"], ["containerd"])
        self.assertEqual(out["mode"], "apply")
        self.assertNotIn("diff", out)
        self.assertEqual(self.calls(), [[
            "run", "worker.rhai", "--output", "json", "-c", "/etc/a.yaml", "-c", "/etc/b.yaml",
            "--set", "nodeRegistration.name=w1", "--set", "kscript.uploadCerts=true",
            "--set", 'discovery.bootstrapToken.caCertHashes=["sha256:ab"]',
            "--only", "containerd", "--only", "kubelet", "--skip", "containerd/swap", "--patches", "/p"]])

    def test_nothing_changed(self):
        self.give("RUN", "\n".join([START, STAGE, STEP_OK, result()]) + "\n")
        out, _raw = self.module("kscript_run", script="worker.rhai", set=["a.b=1", "c=x=y"])
        self.assertFalse(out["changed"])
        self.assertEqual(out["changed_steps"], [])
        self.assertEqual(self.calls()[0][4:], ["--set", "a.b=1", "--set", "c=x=y"])

    def test_check_and_diff_modes_are_dry_run_and_diff(self):
        self.give("RUN", "\n".join([START, STAGE, STEP_CHANGED, result(changed=True, changes=2)]) + "\n")
        out, _raw = self.module("kscript_run", check=True, diff=True, script="worker.rhai", root="/tmp/r")
        self.assertTrue(out["changed"])
        self.assertEqual(self.calls()[0][-4:], ["--root", "/tmp/r", "--dry-run", "--diff"])
        self.assertEqual(len(out["diff"]), 2)
        self.assertEqual(out["diff"][0]["prepared"], FILE_DIFF)
        self.assertIn("/etc/sysctl.d/k8s.conf", out["diff"][0]["before_header"])
        self.assertEqual(out["diff"][1]["prepared"], "+kind: ConfigMap\n+name: x\n")

    def test_failure_names_the_step_its_message_and_causes(self):
        error = ev("error", step="join/discovery", kind="effect", message="token discovery failed",
                   location=None, help="check the token", causes=["cluster-info not signed", "timeout"],
                   frames=[], exit_code=1)
        self.give("RUN", "\n".join([START, error, result(ok=False, failed_step="join/discovery", exit_code=1)]),
                  rc=1)
        out, _raw = self.module("kscript_run", script="worker.rhai")
        self.assertTrue(out["failed"])
        self.assertEqual(out["failed_step"], "join/discovery")
        self.assertEqual(out["error"]["causes"], ["cluster-info not signed", "timeout"])
        self.assertEqual(out["msg"], "join/discovery: token discovery failed (caused by: cluster-info not signed; "
                                     "timeout) -- check the token")

    def test_text_on_stdout_fails_with_the_text(self):
        self.give("RUN", START + "\nkscript: something went wrong\n" + result(), rc=0)
        out, _raw = self.module("kscript_run", script="worker.rhai")
        self.assertTrue(out["failed"])
        self.assertIn("line 2 of kscript's output is not JSON", out["msg"])
        self.assertEqual(out["line"], "kscript: something went wrong")

    def test_a_stream_without_result_fails(self):
        self.give("RUN", START + "\n" + STAGE + "\n", rc=0)
        out, _raw = self.module("kscript_run", script="worker.rhai")
        self.assertTrue(out["failed"])
        self.assertIn("without a result object", out["msg"])

    def test_exit_code_disagreeing_with_result_fails(self):
        self.give("RUN", "\n".join([START, result()]), rc=1)
        out, _raw = self.module("kscript_run", script="worker.rhai")
        self.assertTrue(out["failed"])

    def test_secrets_reach_kscript_in_a_private_file_and_nothing_else(self):
        token = "abcdef.0123456789abcdef"
        msg = ev("message", text="Join worker nodes with: kubeadm join --token " + token)
        self.give("RUN", "\n".join([START, msg, result(changed=True, changes=1)]) + "\n")
        out, raw = self.module("kscript_run", script="worker.rhai", config=["/etc/a.yaml"],
                               set={"discovery.bootstrapToken.apiServerEndpoint": "10.0.0.11:6443"},
                               secret_set={"discovery.bootstrapToken.token": token,
                                           "controlPlane": {"certificateKey": "00ff"}})
        argv = self.calls()[0]
        self.assertFalse(any(token in a for a in argv), argv)  # not in /proc/PID/cmdline
        secret = argv[argv.index("/etc/a.yaml") + 2]  # the last -c
        self.assertEqual(argv[argv.index("/etc/a.yaml") + 1], "-c")
        seen = self.configs()[0][secret]
        self.assertEqual(seen["mode"], "0o600")
        self.assertEqual(json.loads(seen["text"]), {"controlPlane": {"certificateKey": "00ff"},
                                                    "discovery": {"bootstrapToken": {"token": token}}})
        self.assertFalse(os.path.exists(secret), "the secrets file outlived the run")
        self.assertNotIn(token, raw)
        self.assertNotIn("00ff", raw)

    def test_no_binary_is_a_clear_failure(self):
        out, _raw = self.module("kscript_run", script="worker.rhai", binary="/nonexistent/kscript")
        self.assertTrue(out["failed"])
        self.assertIn("no kscript binary at /nonexistent/kscript", out["msg"])


class KscriptFacts(ModuleCase):
    STATUS = json.dumps({"schema": "kscript.status/v1", "script": "control-plane.rhai", "reached": 4,
                         "total": 4, "done": True})

    def test_status_becomes_facts(self):
        self.give("STATUS", self.STATUS, rc=0)
        out, _raw = self.module("kscript_facts", script="control-plane.rhai", timeout=3)
        self.assertFalse(out["changed"])
        self.assertEqual(out["ansible_facts"]["kscript_status"]["reached"], 4)
        self.assertTrue(out["ansible_facts"]["kscript_done"])
        self.assertTrue(out["ansible_facts"]["kscript_joined"], "no init or join stage listed: joined when done")
        self.assertEqual(self.calls(), [["status", "control-plane.rhai", "--output", "json", "--timeout", "3"]])

    def test_a_node_not_done_is_not_a_failure(self):
        self.give("STATUS", self.STATUS.replace("true", "false"), rc=1)
        out, _raw = self.module("kscript_facts")
        self.assertFalse(out.get("failed"), out)
        self.assertFalse(out["ansible_facts"]["kscript_done"])

    def test_joined_is_the_join_stages_files_not_the_last_stage(self):
        # A worker in the cluster whose pod network (stage 4) is not there yet: joined, not done.
        status = {"schema": "kscript.status/v1", "script": "worker.rhai", "reached": 3, "total": 4,
                  "done": False, "stages": [{"number": n, "name": name, "complete": n <= 3, "missing": []}
                                            for n, name in enumerate(["containerd", "kubelet", "join", "network"], 1)]}
        self.give("STATUS", json.dumps(status), rc=1)
        out, _raw = self.module("kscript_facts")
        self.assertFalse(out["ansible_facts"]["kscript_done"])
        self.assertTrue(out["ansible_facts"]["kscript_joined"])
        # Its kube-proxy not running yet: the stage is incomplete, the node still joined.
        status["stages"][2].update(complete=False, missing=[{"kind": "component", "name": "kube-proxy"}])
        self.give("STATUS", json.dumps(status), rc=1)
        out, _raw = self.module("kscript_facts")
        self.assertTrue(out["ansible_facts"]["kscript_joined"])
        # The stage never ran here: not joined.
        status["stages"][2]["missing"] = [{"kind": "not-run"}]
        self.give("STATUS", json.dumps(status), rc=1)
        out, _raw = self.module("kscript_facts")
        self.assertFalse(out["ansible_facts"]["kscript_joined"])
        status["stages"][2]["missing"] = [{"kind": "component", "name": "kube-proxy"}]
        # No kubelet.conf (no TLS bootstrap yet): not joined.
        status["stages"][2]["missing"].append({"kind": "file", "path": "/etc/kubernetes/kubelet.conf"})
        self.give("STATUS", json.dumps(status), rc=1)
        out, _raw = self.module("kscript_facts")
        self.assertFalse(out["ansible_facts"]["kscript_joined"])

    def test_status_that_is_not_json_fails(self):
        self.give("STATUS", "status: no such folder", rc=2)
        out, _raw = self.module("kscript_facts")
        self.assertTrue(out["failed"])
        self.assertIn("did not print its JSON document (exit code 2)", out["msg"])

    @unittest.skipUnless(shutil.which("openssl"), "openssl makes the CA this test pins")
    def test_join_material(self):
        root = os.path.join(self.tmp, "node")
        pki = os.path.join(root, "etc", "kubernetes", "pki")
        os.makedirs(pki)
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                        "-nodes", "-keyout", os.path.join(self.tmp, "ca.key"), "-out", os.path.join(pki, "ca.crt"),
                        "-subj", "/CN=kubernetes", "-days", "1"], check=True, capture_output=True)
        der = subprocess.run("openssl x509 -in %s -pubkey -noout | openssl pkey -pubin -outform der"
                             % os.path.join(pki, "ca.crt"), shell=True, check=True, capture_output=True).stdout
        import hashlib
        with open(os.path.join(root, "etc", "kubernetes", "admin.conf"), "w") as f:
            f.write("clusters:\n- cluster:\n    certificate-authority-data: x\n    server: https://10.0.0.11:6443\n")
        os.makedirs(os.path.join(root, "var", "lib", "kscript"))
        with open(os.path.join(root, "var", "lib", "kscript", "certificate-key"), "w") as f:
            f.write("00ff" * 16 + "\n")
        self.give("STATUS", self.STATUS, rc=0)
        self.give("RUN", "\n".join([START, ev("message", text="kubeadm join ... --token SECRET"),
                                    result(changed=True, changes=1)]))
        out, raw = self.module("kscript_facts", root=root, join=True, upload_certs=True)
        self.assertFalse(out.get("failed"), out)
        self.assertTrue(out["changed"])
        join = out["ansible_facts"]["kscript_join"]
        self.assertEqual(join["server"], "https://10.0.0.11:6443")
        self.assertEqual(join["api_server_endpoint"], "10.0.0.11:6443")
        self.assertEqual(join["ca_cert_hashes"], ["sha256:" + hashlib.sha256(der).hexdigest()])
        self.assertEqual(join["certificate_key"], "00ff" * 16)
        self.assertRegex(join["token"], r"^[a-z0-9]{6}\.[a-z0-9]{16}$")
        self.assertTrue(join["token_stored"])
        self.assertNotIn("SECRET", raw)  # the token run's messages are not returned
        calls = self.calls()
        self.assertEqual(calls[1][:2], ["run", "token.rhai"])
        self.assertFalse(any(join["token"] in a for a in calls[1]), calls[1])
        (seen,) = self.configs()[1].values()
        self.assertEqual(seen["mode"], "0o600")
        self.assertEqual(json.loads(seen["text"]), {"bootstrapTokens": [
            {"description": "kscript.kscript collection", "token": join["token"], "ttl": "2h0m0s"}]})
        self.assertEqual(calls[2][:2], ["run", "control-plane.rhai"])
        self.assertIn("init/upload-certs", calls[2])

    def node(self, ca_text):
        root = os.path.join(self.tmp, "node")
        os.makedirs(os.path.join(root, "etc", "kubernetes", "pki"))
        with open(os.path.join(root, "etc", "kubernetes", "admin.conf"), "w") as f:
            f.write("    server: https://10.0.0.11:6443\n")
        with open(os.path.join(root, "etc", "kubernetes", "pki", "ca.crt"), "w") as f:
            f.write(ca_text)
        return root

    def test_a_ca_that_is_not_a_certificate_is_a_clear_failure(self):
        root = self.node("not a certificate\n")
        self.give("STATUS", self.STATUS, rc=0)
        out, _raw = self.module("kscript_facts", root=root, join=True)
        self.assertTrue(out["failed"])
        self.assertIn("is not a PEM certificate", out["msg"])
        self.assertEqual(len(self.calls()), 1)

    @unittest.skipUnless(shutil.which("openssl"), "openssl makes the CA this test pins")
    def test_check_mode_stores_no_token_and_a_failed_token_run_hides_it(self):
        root = self.node("")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                        "-nodes", "-keyout", os.path.join(self.tmp, "ca.key"),
                        "-out", os.path.join(root, "etc", "kubernetes", "pki", "ca.crt"),
                        "-subj", "/CN=kubernetes", "-days", "1"], check=True, capture_output=True)
        self.give("STATUS", self.STATUS, rc=0)
        self.give("RUN", "\n".join([START, result(changed=True, changes=1)]))
        out, _raw = self.module("kscript_facts", check=True, root=root, join=True)
        self.assertFalse(out["ansible_facts"]["kscript_join"]["token_stored"])
        self.assertIn("--dry-run", self.calls()[1])
        error = ev("error", step="create/token", kind="effect", message="the API server refused", location=None,
                   help=None, causes=[], frames=[], exit_code=1)
        self.give("RUN", "\n".join([START, error, result(ok=False, failed_step="create/token", exit_code=1)]), rc=1)
        out, raw = self.module("kscript_facts", root=root, join=True)
        self.assertTrue(out["failed"])
        self.assertEqual(out["msg"], "create/token: the API server refused")
        (seen,) = self.configs()[3].values()
        self.assertNotIn(json.loads(seen["text"])["bootstrapTokens"][0]["token"], raw)


if __name__ == "__main__":
    unittest.main()
