#!/usr/bin/env python3
"""A read-only image registry on 127.0.0.1 for the tests: serves the one image of an OCI
image-layout tarball (what oci-image.py writes) under any repository name and tag, over
plain HTTP (containerd uses HTTP for a registry on localhost). Prints its port, then serves
until killed. It logs each manifest request on stderr.
usage: registry.py IMAGE.tar"""
import http.server, json, sys, tarfile

layout = tarfile.open(sys.argv[1])
files = {m.name: layout.extractfile(m).read() for m in layout.getmembers() if m.isfile()}
index = json.loads(files["index.json"])
manifest_digest = index["manifests"][0]["digest"]
blobs = {"sha256:" + name.rsplit("/", 1)[1]: data for name, data in files.items() if name.startswith("blobs/sha256/")}
MANIFEST = "application/vnd.oci.image.manifest.v1+json"


class Registry(http.server.BaseHTTPRequestHandler):
    def answer(self, body):
        parts = self.path.split("?")[0].strip("/").split("/")
        if parts == ["v2"]:
            return self.send(200, b"{}", "application/json", body)
        if len(parts) >= 4 and parts[0] == "v2" and parts[-2] == "manifests":
            sys.stderr.write(f"manifest {self.path}\n")
            data = blobs[manifest_digest]
            return self.send(200, data, MANIFEST, body, manifest_digest)
        if len(parts) >= 4 and parts[0] == "v2" and parts[-2] == "blobs" and parts[-1] in blobs:
            return self.send(200, blobs[parts[-1]], "application/octet-stream", body, parts[-1])
        return self.send(404, b'{"errors":[{"code":"NOT_FOUND"}]}', "application/json", body)

    def send(self, code, data, kind, body, digest=None):
        self.send_response(code)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        if digest:
            self.send_header("Docker-Content-Digest", digest)
        self.end_headers()
        if body:
            self.wfile.write(data)

    def do_GET(self):
        self.answer(True)

    def do_HEAD(self):
        self.answer(False)

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Registry)
print(server.server_address[1], flush=True)
server.serve_forever()
