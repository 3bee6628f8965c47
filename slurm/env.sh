# slurm/env.sh: the environment every mcm job runs in, sourced by slurm/lib.sh before any rank starts
# (then slurm.env, your site's file, may override any of it). Each setting says why it is here; a
# value already in the environment wins, so `sbatch --export=ALL,NCCL_DEBUG=INFO ...` still works.

# HDF5 locks every file it opens with flock(); Lustre, GPFS and many NFS mounts refuse it and H5Fopen
# then fails. mcm never shares an HDF5 file between writers (one file per shard, written to a temporary
# name and renamed), so the lock protects nothing here.
export HDF5_USE_FILE_LOCKING="${HDF5_USE_FILE_LOCKING:-FALSE}"

# One rank per task: torch and the decoders take their threads from run.threads or from
# SLURM_CPUS_PER_TASK (src/stages/stage_run.cpp); OpenMP/BLAS must not each start one thread per core
# of the node on top of that.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-${SLURM_CPUS_PER_TASK:-1}}"
export OPENBLAS_NUM_THREADS="${OPENBLAS_NUM_THREADS:-$OMP_NUM_THREADS}"

# Open MPI's shared-memory transport copies large messages with cross-memory attach (CMA), which
# containers without CAP_SYS_PTRACE refuse ("vader ... process_vm_readv: Operation not permitted");
# the plain copy is as fast for mcm's messages (gradients go over NCCL on GPUs).
export OMPI_MCA_btl_vader_single_copy_mechanism="${OMPI_MCA_btl_vader_single_copy_mechanism:-none}"

# PMIx's shared-memory data stores (gds/ds12, ds21) fail on some kernels and container runtimes
# ("PMIX ERROR ... gds_ds21_lock_pthread.c"); the plain hash store is enough for mcm's start-up
# exchange and works everywhere.
export PMIX_MCA_gds="${PMIX_MCA_gds:-hash}"

# NCCL: errors and warnings in the job log (INFO prints the chosen topology, rings and transports:
# set it when a multi-node run is slow or hangs at start-up).
export NCCL_DEBUG="${NCCL_DEBUG:-WARN}"
# NCCL's socket bootstrap (and its TCP fallback) must not pick loopback or a container bridge,
# which other nodes cannot reach; set your data network's interface instead (e.g. ib0, eth0).
export NCCL_SOCKET_IFNAME="${NCCL_SOCKET_IFNAME:-^lo,docker}"
# Site-specific, left to slurm.env: NCCL_IB_HCA (which InfiniBand HCAs), NCCL_NET_GDR_LEVEL (GPUDirect
# RDMA distance), NCCL_IB_DISABLE=1 on Ethernet-only clusters.
