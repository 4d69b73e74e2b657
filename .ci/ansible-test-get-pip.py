# A stand-in for the pip bootstrap script ansible-test downloads from
# ci-files.testing.ansible.com (not reachable from CI machines, which reach package registries
# only). ansible-test runs it in each new virtualenv with the packages to install (pip==24.2 for
# ansible-core 2.19): Python's bundled pip first (ensurepip), then that pip installs them from PyPI.
# .ci/run puts it where ansible-test looks for its cached copy.
import subprocess
import sys

args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
subprocess.check_call([sys.executable, "-m", "ensurepip", "--default-pip"])
subprocess.check_call([sys.executable, "-m", "pip", "install"] + args)
