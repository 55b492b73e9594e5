import sys

from tests.conformance.harness import main

sys.exit(main(sys.argv[1:]))
