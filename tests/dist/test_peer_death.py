"""A stalled (SIGSTOP) or dead (SIGKILL) rank ends the whole job, in time, with rank 1 named.

Runs tests/dist/peer_death.cpp under mpiexec -n 2. Paths come from the environment
(MCM_MPIEXEC, MCM_PEER_DEATH), set by tests/dist/CMakeLists.txt.
"""
import os
import re
import subprocess
import tempfile
import time
import unittest

TIMEOUT_S = 3.0


def run_job(mode):
    with tempfile.TemporaryDirectory(prefix="mcm-peer-death-") as hb:
        cmd = [os.environ["MCM_MPIEXEC"], "-n", "2", "--oversubscribe",
               os.environ["MCM_PEER_DEATH"], mode, hb, str(TIMEOUT_S)]
        try:
            p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=90)
        except subprocess.TimeoutExpired as e:
            raise AssertionError(f"{mode}: the job hung (killed after 90 s); output:\n{e.output}")
        ended = time.time()
    m = re.search(r"rank 1 stops at ([0-9.]+)", p.stdout)
    return p.returncode, p.stdout, (ended - float(m.group(1))) if m else None


class PeerDeath(unittest.TestCase):
    def test_stalled_peer_is_named_and_job_ends(self):
        rc, out, since_stop = run_job("stop")
        self.assertNotEqual(rc, 0, out)
        self.assertIsNotNone(since_stop, out)
        self.assertLess(since_stop, TIMEOUT_S + 5, out)
        self.assertRegex(out, r"peer_death rank 0: allreduce 'loop' at step 5 timed out after 3 s on rank 0: "
                              r"rank 1 stopped responding \(last heartbeat [0-9.]+ s ago, at step 5, in 'forward'")
        print(f"stop: ended {since_stop:.1f} s after rank 1 stopped")

    def test_killed_peer_is_named_and_job_ends(self):
        rc, out, since_stop = run_job("kill")
        self.assertNotEqual(rc, 0, out)
        self.assertIsNotNone(since_stop, out)
        self.assertLess(since_stop, TIMEOUT_S + 5, out)
        # Either our watchdog or mpiexec's own report names rank 1.
        self.assertRegex(out, r"rank 1 stopped responding|process rank 1 with PID", out)
        print(f"kill: ended {since_stop:.1f} s after rank 1 died")


if __name__ == "__main__":
    unittest.main(verbosity=2)
