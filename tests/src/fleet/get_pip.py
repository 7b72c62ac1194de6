"""Stand-in for pip's get-pip.py, which ansible-test runs to bootstrap pip
into each sanity test's empty venv and fetches from ci-files.testing.ansible.com
(a host the test machine may not reach). The same effect from what is at hand:
the interpreter's own pip (ensurepip), which then installs the pinned pip and
packages ansible-test asks for from the package index.

Written by the netbridge test harness (tests/src/fleet/sanity.rs) into the
private HOME it runs ansible-test with, never into the machine's own HOME.
"""

import ensurepip
import subprocess
import sys

# get-pip.py's own options; pip install knows neither.
OWN = ("--no-setuptools", "--no-wheel")

ensurepip.bootstrap()
args = [a for a in sys.argv[1:] if a not in OWN]
status = subprocess.call([sys.executable, "-m", "pip", "install", *args])
if status == 0 and "--no-setuptools" in sys.argv:
    # ensurepip brings setuptools along; the real script would not have.
    status = subprocess.call(
        [sys.executable, "-m", "pip", "uninstall", "-q", "-y", "setuptools"]
    )
sys.exit(status)
