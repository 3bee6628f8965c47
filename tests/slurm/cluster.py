"""A real single-node Slurm cluster on localhost for the tests (and for trying slurm/ by hand):
munged, slurmctld and slurmd from Debian's slurm-wlm, with every file in one temporary folder and
free ports, stopped by their PIDs. The recipe is ../shared/notes/TOOLCHAIN.md item 7:
select/cons_tres with CR_Core_Memory and DefMemPerCPU (jobs share the node), MpiDefault=pmix
(Open MPI has no PMI-1/2), proctrack/linuxproc and task/none (no cgroups needed).

By hand:  python3 tests/slurm/cluster.py up /tmp/slurm   ->  prints `export SLURM_CONF=...`
          python3 tests/slurm/cluster.py down /tmp/slurm
"""
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

MUNGE_PID = "/run/munge/munged.pid"


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False


def _read_pid(path):
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


class Cluster:
    """`with Cluster(folder) as c:` brings the daemons up (node idle) and stops them on exit."""

    def __init__(self, folder, cpus=None, memory_mb=None, min_job_age=300, kill_wait=10, cred_expire=10):
        self.dir = os.path.abspath(folder)
        self.cpus = cpus or os.cpu_count()
        self.memory_mb = memory_mb or 16000
        self.min_job_age = min_job_age
        self.kill_wait = kill_wait
        self.cred_expire = cred_expire
        self.conf = os.path.join(self.dir, "slurm.conf")
        self.env = dict(os.environ, SLURM_CONF=self.conf)
        self.started_munge = False

    def _write_conf(self):
        for sub in ("state", "spool", "log"):
            os.makedirs(os.path.join(self.dir, sub), exist_ok=True)
        d = self.dir
        lines = [
            "ClusterName=mcmtest",
            "SlurmctldHost=localhost",
            "SlurmUser=root",
            "SlurmdUser=root",
            "AuthType=auth/munge",
            # A requeued job waits cred_expire seconds (default 120) before it may start again.
            f"AuthInfo=cred_expire={self.cred_expire}",
            f"StateSaveLocation={d}/state",
            f"SlurmdSpoolDir={d}/spool",
            f"SlurmctldPidFile={d}/slurmctld.pid",
            f"SlurmdPidFile={d}/slurmd.pid",
            f"SlurmctldLogFile={d}/log/slurmctld.log",
            f"SlurmdLogFile={d}/log/slurmd.log",
            f"SlurmctldPort={_free_port()}",
            f"SlurmdPort={_free_port()}",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core_Memory",
            "DefMemPerCPU=4000",
            "MpiDefault=pmix",
            "ReturnToService=2",
            "SchedulerType=sched/backfill",
            "JobCompType=jobcomp/none",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            f"MinJobAge={self.min_job_age}",
            f"KillWait={self.kill_wait}",
            "JobRequeue=1",
            "MaxArraySize=1001",
            f"NodeName=localhost NodeAddr=127.0.0.1 CPUs={self.cpus} RealMemory={self.memory_mb} State=UNKNOWN",
            "PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP",
        ]
        with open(self.conf, "w") as f:
            f.write("\n".join(lines) + "\n")

    def _start_munge(self):
        if _read_pid(MUNGE_PID) and _alive(_read_pid(MUNGE_PID)):
            return  # a munged is already serving this machine
        os.makedirs("/run/munge", exist_ok=True)
        shutil.chown("/run/munge", "munge", "munge")
        subprocess.run(["runuser", "-u", "munge", "--", "/usr/sbin/munged"], check=True)
        self.started_munge = True

    def up(self, timeout=30):
        self._write_conf()
        self._start_munge()
        subprocess.run(["/usr/sbin/slurmctld", "-f", self.conf], check=True, env=self.env)
        subprocess.run(["/usr/sbin/slurmd", "-f", self.conf, "-N", "localhost"], check=True, env=self.env)
        deadline = time.time() + timeout
        while time.time() < deadline:
            p = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, env=self.env)
            if p.returncode == 0 and p.stdout.strip() == "idle":
                return self
            time.sleep(0.2)
        self.down()
        raise RuntimeError(f"slurm did not come up in {timeout} s; logs in {self.dir}/log")

    def down(self):
        pids = [_read_pid(os.path.join(self.dir, f)) for f in ("slurmd.pid", "slurmctld.pid")]
        if self.started_munge:
            pids.append(_read_pid(MUNGE_PID))
        for pid in pids:
            if pid and _alive(pid):
                os.kill(pid, signal.SIGTERM)
        deadline = time.time() + 10
        for pid in pids:
            while pid and _alive(pid) and time.time() < deadline:
                time.sleep(0.1)

    def __enter__(self):
        return self.up()

    def __exit__(self, *exc):
        self.down()

    # ---- client helpers ----
    def run(self, args, check=True, **kw):
        p = subprocess.run(args, capture_output=True, text=True, env=self.env, **kw)
        if check and p.returncode != 0:
            raise AssertionError(f"{' '.join(args)} exited {p.returncode}\n{p.stdout}\n{p.stderr}")
        return p

    def job(self, job_id):
        """scontrol show job as a dict (the first record: an array's first task)."""
        out = self.run(["scontrol", "show", "job", "-o", str(job_id)]).stdout
        rec = {}
        for tok in out.splitlines()[0].split():
            if "=" in tok:
                k, v = tok.split("=", 1)
                rec.setdefault(k, v)
        return rec

    def jobs(self, job_id):
        """Every record of a job (array tasks), each a dict."""
        out = self.run(["scontrol", "show", "job", "-o", str(job_id)]).stdout
        recs = []
        for line in out.splitlines():
            rec = {}
            for tok in line.split():
                if "=" in tok:
                    k, v = tok.split("=", 1)
                    rec.setdefault(k, v)
            recs.append(rec)
        return recs

    def queue_empty(self):
        return self.run(["squeue", "-h"]).stdout.strip() == ""

    def wait_idle(self, timeout):
        """Until no job is pending or running; raises with the queue on timeout."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.queue_empty():
                return
            time.sleep(1)
        raise AssertionError("jobs still queued after %d s:\n%s" % (timeout, self.run(["squeue"]).stdout))


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("up", "down"):
        sys.exit(__doc__)
    c = Cluster(sys.argv[2])
    if sys.argv[1] == "up":
        c.up()
        print(f"export SLURM_CONF={c.conf}")
    else:
        c.down()
