"""``python -m tests.e2e.testbed``: build (or find in the cache) kube-apiserver, etcd and the CRDs."""

import sys

from .build import main

sys.exit(main())
