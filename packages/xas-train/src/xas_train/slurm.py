"""Generate Slurm batch scripts that run ``xas-train train CONFIG`` on one or more nodes.

The scripts are meant to be submitted as is (``sbatch script.sh``), and they are tested that
way under a real Slurm. What a generated script does:

* asks for ``--nodes`` nodes with one launcher task each, ``--gpus-per-node`` GPUs (no gres
  line at all on CPU nodes, where asking for GPUs is refused) and ``--cpus-per-task`` CPUs;
* activates the Python environment it was generated from (``SlurmOptions.activate``, by
  default ``sys.prefix``), after the ``env_setup`` lines;
* starts ``nproc_per_node`` training processes per node (default: one per GPU, one on CPU
  nodes) on a rendezvous port derived from the job id (``20000 + SLURM_JOB_ID % 20000``), so
  that two jobs sharing a node do not collide, with a per-job ``TORCH_EXTENSIONS_DIR``;
* handles time limits and preemption: ``#SBATCH --signal=B:USR1@120`` makes Slurm send
  SIGUSR1 to the batch shell 120 s before the time limit (``scancel --signal=USR1 --batch
  JOBID`` sends it at once); the shell's trap writes the stop file named by
  ``$XAS_TRAIN_STOP_FILE``, the trainer sees it after its current epoch, saves a checkpoint,
  acknowledges in that file and stops, and the script requeues the job (``scontrol requeue``,
  ``#SBATCH --requeue``); the requeued job resumes from the checkpoint. A file rather than a
  forwarded signal reaches every rank on every node whatever the launcher (torchrun and the
  DeepSpeed launcher would die of a SIGUSR1 themselves).

:func:`query_cluster` reads the partitions and nodes of the reachable Slurm (``sinfo``) and
:func:`check_against_cluster` turns a request that could never run there (more CPUs, GPUs,
memory, nodes or time than a partition offers, an unknown partition) into a one-line
``ValueError`` naming the limit; ``xas-train slurm`` does both before writing the script.

Two launchers are supported:

``torchrun``
    ``srun`` starts one task per node; every task runs ``torchrun`` with a ``c10d``
    rendezvous on the first node of the allocation. ``torchrun`` starts ``NPROC_PER_NODE``
    processes and sets ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``/``MASTER_ADDR``/``MASTER_PORT``.

``deepspeed``
    A hostfile (``HOST slots=NPROC`` per node) is written at run time into the submit
    directory, then ``srun`` starts one task per node, each running the DeepSpeed launcher
    with ``--no_ssh --node_rank=$SLURM_NODEID``. DeepSpeed's own multi-node backends are
    not used: ``pdsh`` (the default) needs pdsh and password-less ssh between compute
    nodes, and ``--launcher slurm`` (DeepSpeed 0.19) runs ``srun -n TOTAL python -u
    SCRIPT`` -- it ignores ``--module`` and does not set ``RANK``/``LOCAL_RANK``/
    ``WORLD_SIZE``, which the trainer reads. ``--no_local_rank`` is passed because the
    DeepSpeed launcher would otherwise insert ``--local_rank=N`` before the training
    arguments, which the ``xas-train`` command line does not accept (``LOCAL_RANK`` is set
    in the environment either way).

How ``SlurmOptions.train_command`` becomes the launched program (the absolute, shell-quoted
config path is always appended as the last argument):

* ``xas-train ARGS...`` (the default ``xas-train train``) runs the module
  ``xas_train.cli`` (``torchrun -m`` / ``deepspeed --module``) with the interpreter that
  runs the launcher, so no console-script lookup happens on the compute nodes;
* ``python -m MODULE ARGS...`` (also ``python3``/``python3.11``) runs ``MODULE`` the same way;
* ``SCRIPT.py ARGS...`` runs the script with the launcher's interpreter;
* anything else is run as an executable (``torchrun --no-python`` /
  ``deepspeed --no_python``).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from xas_data.io_utils import umask_mode

# MASTER_PORT = PORT_BASE + SLURM_JOB_ID % PORT_SPAN unless a fixed port is given (shared with
# the srun featurization of xas-features)
from xas_features.distributed import PORT_BASE, PORT_SPAN

__all__ = [
    "LAUNCHERS",
    "STOP_FILE_ENV",
    "ClusterInfo",
    "SlurmOptions",
    "check_against_cluster",
    "query_cluster",
    "render_sbatch",
    "write_sbatch",
]

LAUNCHERS: tuple[str, ...] = ("torchrun", "deepspeed")
"""Launchers understood by :func:`render_sbatch`."""

TRAIN_MODULE = "xas_train.cli"
"""Module behind the ``xas-train`` console script (it runs the app when executed with -m)."""

STOP_FILE_ENV = "XAS_TRAIN_STOP_FILE"
"""Environment variable naming the stop file the trainer watches (see the module docstring)."""

_JOB_NAME_RE = re.compile(r"[A-Za-z0-9_.+:@-]+")
_PARTITION_RE = re.compile(r"[A-Za-z0-9_.-]+(,[A-Za-z0-9_.-]+)*")
_ACCOUNT_RE = re.compile(r"[A-Za-z0-9_.-]+")
_MEM_RE = re.compile(r"[0-9]+[KMGTkmgt]?")
_TIME_RE = re.compile(
    r"(?:(?P<days>[0-9]+)-)?(?P<hours>[0-9]+):(?P<minutes>[0-9]{2}):(?P<seconds>[0-9]{2})"
)
_PYTHON_RE = re.compile(r"python(3(\.[0-9]+)?)?")

# sbatch options the generator writes itself, by long and short spelling, with the field to use.
_MANAGED_SBATCH: dict[str, str] = {
    "--job-name": "job_name",
    "-J": "job_name",
    "--nodes": "nodes",
    "-N": "nodes",
    "--ntasks-per-node": "(fixed to 1: one launcher per node)",
    "--gpus-per-node": "gpus_per_node",
    "--cpus-per-task": "cpus_per_task",
    "-c": "cpus_per_task",
    "--time": "time",
    "-t": "time",
    "--output": "output",
    "-o": "output",
    "--partition": "partition",
    "-p": "partition",
    "--account": "account",
    "-A": "account",
    "--mem": "mem",
    "--signal": "signal_before_s",
    "--requeue": "requeue",
    "--no-requeue": "requeue",
    "--open-mode": "(fixed to append: a requeued job adds to its log)",
}


def _check_int(name: str, value: object, minimum: int, maximum: int | None = None) -> None:
    """Raise ValueError unless ``value`` is an int (not bool) in [minimum, maximum]."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
        raise ValueError(f"{name} must be {bound}, got {value!r}")


def _check_one_line(name: str, value: object) -> str:
    """Return ``value`` if it is a string without line breaks or NUL, else raise ValueError."""
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string, got {value!r}")
    if any(ch in value for ch in "\n\r\0"):
        raise ValueError(
            f"{name} must be a single line, got {value!r}; pass several lines as separate items"
        )
    return value


def _check_time(value: object) -> None:
    """Validate a Slurm time limit written as HH:MM:SS or D-HH:MM:SS."""
    text = _check_one_line("time", value)
    match = _TIME_RE.fullmatch(text)
    if match is None:
        raise ValueError(
            f"time must look like HH:MM:SS or D-HH:MM:SS (e.g. '04:00:00' or '1-12:00:00'), "
            f"got {text!r}"
        )
    days, hours = match["days"], int(match["hours"])
    minutes, seconds = int(match["minutes"]), int(match["seconds"])
    if minutes >= 60 or seconds >= 60 or (days is not None and hours >= 24):
        raise ValueError(
            f"time {text!r} is out of range: minutes and seconds must be < 60"
            + (" and hours < 24 after the day count" if days is not None else "")
        )
    if int(days or 0) == 0 and hours == 0 and minutes == 0 and seconds == 0:
        raise ValueError(f"time must be longer than zero, got {text!r}; e.g. '04:00:00'")


def _tuple_of_lines(name: str, value: object) -> tuple[str, ...]:
    """Turn a list/tuple of one-line strings into a tuple; reject a bare string."""
    if isinstance(value, str):
        raise ValueError(
            f"{name} must be a tuple of strings (one per item), got the string {value!r}; "
            f"write ({value!r},) for a single item"
        )
    if not isinstance(value, (tuple, list)):
        raise ValueError(f"{name} must be a tuple of strings, got {value!r}")
    return tuple(_check_one_line(f"{name} item", item) for item in value)


def _current_environment() -> str:
    """The prefix of the Python environment running this code (a venv, conda env or system)."""
    return sys.prefix


@dataclass(frozen=True)
class SlurmOptions:
    """Resources and launch settings for one sbatch script.

    All fields are validated on construction; a bad value raises ``ValueError`` naming the
    value and how to fix it. ``env_setup`` and ``extra_sbatch`` also accept lists (stored as
    tuples). ``nproc_per_node`` left at None becomes one process per GPU (one on CPU nodes).
    """

    nodes: int
    """Number of nodes (>= 1)."""
    gpus_per_node: int
    """GPUs per node (>= 0); 0 means CPU nodes: the script asks for no GPUs (no gres line)."""
    launcher: str = "torchrun"
    """``"torchrun"`` (srun + torchrun c10d rendezvous) or ``"deepspeed"`` (DeepSpeed launcher)."""
    job_name: str = "xas-train"
    """Slurm job name, no whitespace."""
    time: str = "04:00:00"
    """Time limit, ``HH:MM:SS`` or ``D-HH:MM:SS``."""
    partition: str | None = None
    """Partition (or comma-separated partitions); omitted from the script when None."""
    account: str | None = None
    """Account to charge; omitted when None."""
    cpus_per_task: int = 8
    """CPUs per node (the one launcher task of a node), shared by its training processes
    (OMP_NUM_THREADS = cpus_per_task // nproc_per_node, at least 1)."""
    mem: str | None = None
    """Memory per node, e.g. ``"64G"`` (Slurm's default unit is megabytes); omitted when None."""
    rdzv_port: int | None = None
    """Fixed port for the rendezvous / master on the first node (MASTER_PORT); None derives it
    from the job id at run time (``20000 + SLURM_JOB_ID % 20000``), so that jobs sharing a node
    use different ports."""
    env_setup: tuple[str, ...] = ()
    """Shell lines run before launching, e.g. ``"module load cuda"`` (before ``activate``)."""
    extra_sbatch: tuple[str, ...] = ()
    """Extra sbatch options without the ``#SBATCH`` prefix, e.g. ``"--qos=high"``."""
    output: str = "%x-%j.out"
    """Slurm ``--output`` pattern. Relative paths are relative to the submit directory, and the
    directory must exist when the job starts (Slurm does not create it), hence the default
    writes to the submit directory itself. A requeued job appends to it."""
    train_command: str = "xas-train train"
    """Command that takes the config path as its last argument (see the module docstring)."""
    nproc_per_node: int | None = None
    """Training processes per node; None: one per GPU, or 1 on CPU nodes. On GPU nodes at most
    ``gpus_per_node`` (each process drives the GPU of its LOCAL_RANK)."""
    activate: str | None = field(default_factory=_current_environment)
    """Python environment (prefix folder) activated by the script: ``source PREFIX/bin/activate``
    when it has one (a venv), else ``PREFIX/bin`` put first on PATH (conda, system). Defaults
    to the environment generating the script; None leaves the environment alone."""
    signal_before_s: int | None = 120
    """Seconds before the time limit at which Slurm sends SIGUSR1 to the batch shell, which
    makes the trainer checkpoint and stop (``#SBATCH --signal=B:USR1@N``); None: no signal
    handling (and no requeue)."""
    requeue: bool = True
    """After a checkpoint on SIGUSR1, requeue the job (``scontrol requeue``) so that it resumes;
    False: the job ends and is resubmitted by hand."""

    def __post_init__(self) -> None:
        _check_int("nodes", self.nodes, 1)
        _check_int("gpus_per_node", self.gpus_per_node, 0)
        _check_int("cpus_per_task", self.cpus_per_task, 1)
        if self.rdzv_port is not None:
            _check_int("rdzv_port", self.rdzv_port, 1, 65535)
        if self.nproc_per_node is None:
            object.__setattr__(self, "nproc_per_node", max(self.gpus_per_node, 1))
        _check_int("nproc_per_node", self.nproc_per_node, 1)
        if self.gpus_per_node and self.nproc_per_node > self.gpus_per_node:
            raise ValueError(
                f"nproc_per_node {self.nproc_per_node} exceeds gpus_per_node "
                f"{self.gpus_per_node}: each process drives one GPU; use at most "
                f"{self.gpus_per_node} processes per node, or gpus_per_node 0 for CPU processes"
            )
        if self.signal_before_s is not None:
            _check_int("signal_before_s", self.signal_before_s, 1, 65535)
        if not isinstance(self.requeue, bool):
            raise ValueError(f"requeue must be True or False, got {self.requeue!r}")
        if self.activate is not None:
            activate = _check_one_line("activate", self.activate)
            if not activate or not os.path.isabs(activate):
                raise ValueError(
                    f"activate must be the absolute path of a Python environment (e.g. "
                    f"{sys.prefix!r}) or None, got {activate!r}"
                )
        if self.launcher not in LAUNCHERS:
            raise ValueError(
                f"launcher must be one of {', '.join(map(repr, LAUNCHERS))}, got {self.launcher!r}"
            )
        job_name = _check_one_line("job_name", self.job_name)
        if not _JOB_NAME_RE.fullmatch(job_name):
            raise ValueError(
                f"job_name must be non-empty and use only letters, digits and _ . + : @ - "
                f"(no whitespace or quotes), got {job_name!r}; e.g. 'xas-train-fe-k'"
            )
        _check_time(self.time)
        if self.partition is not None and not _PARTITION_RE.fullmatch(
            _check_one_line("partition", self.partition)
        ):
            raise ValueError(
                f"partition must be a partition name or a comma-separated list of names "
                f"(letters, digits, _ . -), got {self.partition!r}; e.g. 'gpu'"
            )
        if self.account is not None and not _ACCOUNT_RE.fullmatch(
            _check_one_line("account", self.account)
        ):
            raise ValueError(
                f"account must be an account name (letters, digits, _ . -), got {self.account!r}"
            )
        if self.mem is not None and not _MEM_RE.fullmatch(_check_one_line("mem", self.mem)):
            raise ValueError(
                f"mem must be a number with an optional K/M/G/T suffix (e.g. '64G'), got {self.mem!r}"
            )
        output = _check_one_line("output", self.output)
        if not output or any(ch.isspace() for ch in output):
            raise ValueError(
                f"output must be a non-empty path pattern without whitespace, got {output!r}; "
                f"e.g. '%x-%j.out'"
            )
        object.__setattr__(self, "env_setup", _tuple_of_lines("env_setup", self.env_setup))
        extras = _tuple_of_lines("extra_sbatch", self.extra_sbatch)
        object.__setattr__(self, "extra_sbatch", tuple(item.strip() for item in extras))
        for item in self.extra_sbatch:
            self._check_extra_sbatch(item)
        command = _check_one_line("train_command", self.train_command)
        try:
            tokens = shlex.split(command)
        except ValueError as err:
            raise ValueError(
                f"train_command {command!r} is not valid shell syntax ({err}); check the quotes"
            ) from None
        if not tokens:
            raise ValueError("train_command must not be empty; e.g. 'xas-train train'")
        if _PYTHON_RE.fullmatch(tokens[0]) and tokens[1:2] == ["-m"] and len(tokens) < 3:
            raise ValueError(f"train_command {command!r} has '-m' without a module name")

    @staticmethod
    def _check_extra_sbatch(item: str) -> None:
        """Reject an extra sbatch option that is malformed or duplicates a managed field."""
        if item.upper().startswith("#SBATCH"):
            raise ValueError(
                f"extra_sbatch items are written without the '#SBATCH' prefix, got {item!r}; "
                f"use {item[len('#SBATCH') :].strip()!r}"
            )
        if not item.startswith("-"):
            raise ValueError(
                f"extra_sbatch items must be sbatch options such as '--qos=high', got {item!r}"
            )
        name = re.split(r"[=\s]", item, maxsplit=1)[0]
        if name.startswith("-") and not name.startswith("--") and len(name) > 2:
            name = name[:2]  # short option with attached value, e.g. "-t10"
        if name in _MANAGED_SBATCH:
            raise ValueError(
                f"extra_sbatch item {item!r} duplicates an option the generator writes; "
                f"set SlurmOptions.{_MANAGED_SBATCH[name]} instead"
            )


def _launch_target(train_command: str) -> tuple[str, list[str]]:
    """Split ``train_command`` into a launch mode and its program + arguments.

    Returns ``(mode, argv)`` with ``mode`` one of ``"module"`` (``argv[0]`` is a module),
    ``"script"`` (a ``.py`` file run by the launcher's interpreter) or ``"exec"`` (any
    executable, run without an interpreter).
    """
    tokens = shlex.split(train_command)
    if tokens[0] == "xas-train":
        return "module", [TRAIN_MODULE, *tokens[1:]]
    if _PYTHON_RE.fullmatch(tokens[0]) and tokens[1:2] == ["-m"]:
        return "module", tokens[2:]
    if tokens[0].endswith(".py"):
        return "script", tokens
    return "exec", tokens


def _absolute_config(config_path: str | os.PathLike[str]) -> str:
    """Return the config path as an absolute, normalised string (it need not exist here)."""
    text = os.fspath(config_path)
    if not isinstance(text, str) or not text:
        raise ValueError(f"config_path must be a non-empty path, got {config_path!r}")
    _check_one_line("config_path", text)
    return os.path.abspath(os.path.expanduser(text))


def _quote_all(words: list[str]) -> str:
    """Shell-quote and join ``words``."""
    return " ".join(shlex.quote(word) for word in words)


def _generator_version() -> str:
    """Version of xas-train for the generated-by line."""
    try:
        return version("xas-train")
    except PackageNotFoundError:  # e.g. running from a source tree without metadata
        return "unknown version"


def _sbatch_lines(options: SlurmOptions) -> list[str]:
    """The ``#SBATCH`` directives for ``options``."""
    lines = [
        f"#SBATCH --job-name={options.job_name}",
        f"#SBATCH --nodes={options.nodes}",
        "#SBATCH --ntasks-per-node=1",
    ]
    if options.gpus_per_node > 0:  # none at all on CPU nodes: a gres request is refused there
        lines.append(f"#SBATCH --gpus-per-node={options.gpus_per_node}")
    lines += [
        f"#SBATCH --cpus-per-task={options.cpus_per_task}",
        f"#SBATCH --time={options.time}",
        f"#SBATCH --output={options.output}",
        "#SBATCH --open-mode=append",
    ]
    if options.signal_before_s is not None:
        lines.append(f"#SBATCH --signal=B:USR1@{options.signal_before_s}")
        lines.append("#SBATCH --requeue" if options.requeue else "#SBATCH --no-requeue")
    if options.partition is not None:
        lines.append(f"#SBATCH --partition={options.partition}")
    if options.account is not None:
        lines.append(f"#SBATCH --account={options.account}")
    if options.mem is not None:
        lines.append(f"#SBATCH --mem={options.mem}")
    lines += [f"#SBATCH {item}" for item in options.extra_sbatch]
    return lines


_SRUN = (
    'srun --nodes="$SLURM_NNODES" --ntasks-per-node=1 '
    '--cpus-per-task="$CPUS_PER_NODE" --kill-on-bad-exit=1'
)


def _torchrun_lines(target: list[str], mode: str, background: bool) -> list[str]:
    """Launch section for srun + torchrun with a c10d rendezvous."""
    mode_flag = {"module": ["-m"], "script": [], "exec": ["--no-python"]}[mode]
    return [
        "# One srun task per node; each runs torchrun, which starts NPROC_PER_NODE processes",
        "# and sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT for them.",
        "# The c10d rendezvous is hosted by torchrun on the first node ($MASTER_ADDR).",
        "require_command torchrun",
        f"{_SRUN} \\",
        '    torchrun --nnodes="$SLURM_NNODES" --nproc-per-node="$NPROC_PER_NODE" \\',
        '    --rdzv-id="$SLURM_JOB_ID" --rdzv-backend=c10d \\',
        '    --rdzv-endpoint="$MASTER_ADDR:$MASTER_PORT" \\',
        "    " + _quote_all([*mode_flag, *target]) + (" &" if background else ""),
    ]


def _deepspeed_lines(target: list[str], mode: str, background: bool) -> list[str]:
    """Launch section for the DeepSpeed launcher, one local launcher per node."""
    mode_flag = {"module": ["--module"], "script": [], "exec": ["--no_python"]}[mode]
    return [
        "# DeepSpeed reads the nodes and their slots (processes per node) from a hostfile.",
        "# It is kept after the job for reference; delete it when you no longer need it.",
        'HOSTFILE="${SLURM_SUBMIT_DIR:-$PWD}/hostfile-${SLURM_JOB_ID}"',
        'for host in "${NODES[@]}"; do',
        '    printf \'%s slots=%s\\n\' "$host" "$NPROC_PER_NODE"',
        'done >"$HOSTFILE"',
        "",
        "# Launcher choice: srun starts one task per node and every task runs the DeepSpeed",
        "# launcher locally with --no_ssh --node_rank=$SLURM_NODEID, so each node starts its own",
        "# NPROC_PER_NODE processes with RANK = node_rank * NPROC_PER_NODE + LOCAL_RANK. This",
        "# works in any allocation; the alternatives do not:",
        "#   --launcher pdsh (default) needs pdsh and password-less ssh between compute nodes;",
        "#   --launcher slurm runs 'srun -n TOTAL python -u SCRIPT', which ignores --module and",
        "#   leaves RANK/LOCAL_RANK/WORLD_SIZE unset (the trainer reads them).",
        "# --no_local_rank: otherwise DeepSpeed inserts --local_rank=N before the training",
        "# arguments, which xas-train does not accept; LOCAL_RANK is set in the environment.",
        "# DeepSpeed sets CUDA_VISIBLE_DEVICES=0..NPROC_PER_NODE-1 on each node: right when Slurm",
        "# confines jobs to their GPUs (cgroups, the usual setup) or nodes are used whole.",
        "require_command deepspeed",
        f"{_SRUN} \\",
        '    bash -c \'exec deepspeed --node_rank="$SLURM_NODEID" "$@"\' deepspeed \\',
        '    --hostfile="$HOSTFILE" --num_nodes="$SLURM_NNODES" --num_gpus="$NPROC_PER_NODE" \\',
        '    --master_addr="$MASTER_ADDR" --master_port="$MASTER_PORT" \\',
        "    --no_ssh --no_local_rank \\",
        "    " + _quote_all([*mode_flag, *target]) + (" &" if background else ""),
    ]


def _activate_lines(prefix: str) -> list[str]:
    """Shell lines activating the Python environment at ``prefix`` (checked at run time)."""
    env = shlex.quote(prefix)
    if os.path.isfile(os.path.join(prefix, "bin", "activate")):
        return [
            "# The Python environment this script was generated from (xas-train slurm",
            "# --no-env-activate leaves this out; SlurmOptions.activate=None in Python).",
            f"PYTHON_ENV={env}",
            'if [[ ! -f "$PYTHON_ENV/bin/activate" ]]; then',
            '    echo "error: $PYTHON_ENV/bin/activate not found on $(hostname): the environment'
            ' must be on a file system the compute nodes see" >&2',
            "    exit 1",
            "fi",
            "set +u  # activate scripts may read unset variables",
            'source "$PYTHON_ENV/bin/activate"',
            "set -u",
            "",
        ]
    return [
        "# The Python environment this script was generated from (no activate script: its",
        "# bin/ goes first on PATH; xas-train slurm --no-env-activate leaves this out).",
        f"PYTHON_ENV={env}",
        'if [[ ! -d "$PYTHON_ENV/bin" ]]; then',
        '    echo "error: $PYTHON_ENV/bin not found on $(hostname): the environment must be on a'
        ' file system the compute nodes see" >&2',
        "    exit 1",
        "fi",
        'export PATH="$PYTHON_ENV/bin:$PATH"',
        "",
    ]


def _stop_trap_lines() -> list[str]:
    """The SIGUSR1 trap: write the stop file the trainer polls after every epoch."""
    return [
        "# Time limit / preemption: Slurm sends SIGUSR1 to this shell --signal seconds before",
        "# the end (scancel --signal=USR1 --batch JOBID sends it at once). The trap writes the",
        f"# stop file ${STOP_FILE_ENV}; every rank looks for it after each epoch, the trainer",
        "# then saves a checkpoint, writes 'checkpoint TAG' into the file and stops, and this",
        "# script requeues the job, which resumes from that checkpoint. (The file must be on a",
        "# file system all nodes see: the submit directory.)",
        f'export {STOP_FILE_ENV}="${{SLURM_SUBMIT_DIR:-$PWD}}/xas-train-${{SLURM_JOB_ID}}.stop"',
        f'rm -f "${STOP_FILE_ENV}"',
        "request_stop() {",
        '    echo "job $SLURM_JOB_ID: SIGUSR1 received: asking the trainer to save a checkpoint'
        ' after this epoch and stop"',
        f'    echo "stop requested" >"${STOP_FILE_ENV}"',
        "}",
        "trap request_stop USR1",
        "",
    ]


def _wait_and_requeue_lines(requeue: bool) -> list[str]:
    """Wait for the launcher started in the background; requeue after a checkpoint on USR1."""
    lines = [
        "LAUNCH_PID=$!",
        "# 'wait' returns early when the USR1 trap runs; wait again until the launcher exits",
        "while :; do",
        "    STATUS=0",
        '    wait "$LAUNCH_PID" || STATUS=$?',
        '    kill -0 "$LAUNCH_PID" 2>/dev/null || break',
        "done",
        f'if grep -q "^checkpoint " "${STOP_FILE_ENV}" 2>/dev/null; then',
        f'    SAVED="$(cat "${STOP_FILE_ENV}")"',
        f'    rm -f "${STOP_FILE_ENV}"',
    ]
    if requeue:
        lines += [
            '    echo "job $SLURM_JOB_ID: the trainer stopped after saving $SAVED; requeueing'
            ' the job, which resumes from it"',
            '    scontrol requeue "$SLURM_JOB_ID" || {',
            '        echo "error: scontrol requeue $SLURM_JOB_ID failed: submit this script again'
            ' to resume from $SAVED" >&2',
            "        exit 1",
            "    }",
            "    exit 0",
        ]
    else:
        lines += [
            '    echo "job $SLURM_JOB_ID: the trainer stopped after saving $SAVED; submit this'
            ' script again to resume from it"',
            "    exit 0",
        ]
    lines += ["fi", f'rm -f "${STOP_FILE_ENV}"', 'exit "$STATUS"']
    return lines


def render_sbatch(config_path: str | os.PathLike[str], options: SlurmOptions) -> str:
    """Return the text of an sbatch script that trains with ``config_path`` under ``options``.

    ``config_path`` is made absolute against the current directory (it does not have to exist
    on this machine) and shell-quoted. The script runs ``options.env_setup``, activates
    ``options.activate``, exports ``MASTER_ADDR`` (first node of the allocation),
    ``MASTER_PORT`` (``options.rdzv_port``, or derived from the job id), ``OMP_NUM_THREADS``
    (the node's CPUs divided among its processes, at least 1) and a per-job
    ``TORCH_EXTENSIONS_DIR``, and launches ``options.train_command CONFIG`` with the chosen
    launcher; with ``options.signal_before_s`` it also handles SIGUSR1 (see the module
    docstring).
    """
    if not isinstance(options, SlurmOptions):
        raise ValueError(f"options must be a SlurmOptions, got {type(options).__name__}")
    config = _absolute_config(config_path)
    mode, target = _launch_target(options.train_command)
    target = [*target, config]
    nproc = options.nproc_per_node
    device = f"{options.gpus_per_node} GPU(s)" if options.gpus_per_node else "no GPU (CPU)"
    human_command = _quote_all([*shlex.split(options.train_command), config])
    preempt = options.signal_before_s is not None

    lines = [
        "#!/bin/bash",
        f"# Generated by xas_train.slurm (xas-train {_generator_version()}); edit freely.",
        f"# Runs: {human_command}",
        f"#   on {options.nodes} node(s) x {nproc} process(es) per node, {device} per node,",
        f"#   launched with {options.launcher}.",
        "# Submit from the directory the job should run in:  sbatch THIS_SCRIPT.sh",
    ]
    if preempt:
        after = (
            "the job requeues itself and resumes from it"
            if options.requeue
            else "submit the script again to resume from it"
        )
        lines += [
            f"# SIGUSR1 ({options.signal_before_s} s before the time limit, or scancel "
            "--signal=USR1 --batch JOBID):",
            f"#   the trainer saves a checkpoint after its current epoch and stops; {after}.",
        ]
    out_dir = os.path.dirname(options.output)
    if out_dir:
        lines.append(
            f"# Slurm does not create the log folder: run  mkdir -p {shlex.quote(out_dir)}  "
            "before sbatch, or the job fails without a log."
        )
    lines += _sbatch_lines(options)
    lines += [
        "",
        "set -euo pipefail",
        "",
        ': "${SLURM_JOB_ID:?not inside a Slurm job: submit this script with sbatch}"',
        "",
        "require_command() {",
        '    command -v "$1" >/dev/null 2>&1 || {',
        '        echo "error: $1 not found on PATH; activate the training environment" \\',
        '            "(SlurmOptions.activate / env_setup, e.g. source .venv/bin/activate)" >&2',
        "        exit 127",
        "    }",
        "}",
        "",
    ]
    if preempt:
        lines += _stop_trap_lines()
    if options.env_setup:
        lines += ["# Environment setup", *options.env_setup, ""]
    if options.activate is not None:
        lines += _activate_lines(options.activate)
    port = (
        str(options.rdzv_port)
        if options.rdzv_port is not None
        else f"$(( {PORT_BASE} + SLURM_JOB_ID % {PORT_SPAN} ))"
    )
    port_comment = (
        "# Rendezvous port (fixed by SlurmOptions.rdzv_port)."
        if options.rdzv_port is not None
        else "# Rendezvous port from the job id: jobs sharing a node do not collide."
    )
    lines += [
        f"NPROC_PER_NODE={nproc}",
        "",
        "# Hosts of the allocation; the first one hosts the rendezvous / rank 0.",
        "# (Read into an array rather than '| head -n 1': with pipefail an early-closed pipe",
        "# could make scontrol fail with SIGPIPE and end the job.)",
        'NODE_LIST="$(scontrol show hostnames "$SLURM_JOB_NODELIST")"',
        'mapfile -t NODES <<<"$NODE_LIST"',
        'MASTER_ADDR="${NODES[0]}"',
        'if [[ -z "$MASTER_ADDR" ]]; then',
        '    echo "error: scontrol returned no hosts for SLURM_JOB_NODELIST=$SLURM_JOB_NODELIST" >&2',
        "    exit 1",
        "fi",
        "export MASTER_ADDR",
        port_comment,
        f"export MASTER_PORT={port}",
        "# JIT-compiled torch/DeepSpeed ops of this job (a folder shared by all jobs serialises",
        "# them on one lock and can hold a half-built op of a killed job).",
        'export TORCH_EXTENSIONS_DIR="${TMPDIR:-/tmp}/xas-torch-extensions-$(id -u)-${SLURM_JOB_ID}"',
        "",
        "# Share the node's CPUs among its training processes (at least one thread each).",
        f'CPUS_PER_NODE="${{SLURM_CPUS_PER_TASK:-{options.cpus_per_task}}}"',
        "export OMP_NUM_THREADS=$(( CPUS_PER_NODE / NPROC_PER_NODE > 0 "
        "? CPUS_PER_NODE / NPROC_PER_NODE : 1 ))",
        "export PYTHONUNBUFFERED=1",
        "# NCCL knobs, uncomment as needed:",
        "# export NCCL_DEBUG=INFO            # verbose NCCL logs when a job hangs",
        "# export NCCL_SOCKET_IFNAME=ib0     # network interface for bootstrap traffic",
        "# export NCCL_IB_DISABLE=1          # no InfiniBand on this cluster",
        "",
        'echo "job $SLURM_JOB_ID (restart ${SLURM_RESTART_COUNT:-0}): ${#NODES[@]} node(s)'
        " [${NODES[*]}], $NPROC_PER_NODE process(es) per node, master $MASTER_ADDR:$MASTER_PORT,"
        ' OMP_NUM_THREADS=$OMP_NUM_THREADS"',
        "",
    ]
    if options.launcher == "torchrun":
        lines += _torchrun_lines(target, mode, background=preempt)
    else:
        lines += _deepspeed_lines(target, mode, background=preempt)
    if preempt:
        lines += _wait_and_requeue_lines(options.requeue)
    return "\n".join(lines) + "\n"


def write_sbatch(
    config_path: str | os.PathLike[str],
    options: SlurmOptions,
    out_path: str | os.PathLike[str],
) -> Path:
    """Render the script and write it to ``out_path`` atomically, executable (0o777 under the umask).

    The text goes to a temporary file next to ``out_path`` that is renamed over it, so the
    target is either the old file or the complete new one; the temporary file is removed on
    failure. Missing parent folders are created. Returns the absolute path written.
    """
    text = render_sbatch(config_path, options)
    target = Path(out_path).expanduser().absolute()
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, umask_mode(executable=True))
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


# --------------------------------------------------------------------------- the cluster


@dataclass(frozen=True)
class NodeInfo:
    """One node of one partition as ``sinfo`` reports it."""

    name: str
    partition: str
    cpus: int
    gpus: int
    memory_mb: int | None
    """None when Slurm does not know it (``sinfo`` prints a non-number)."""


@dataclass(frozen=True)
class ClusterInfo:
    """Partitions and their nodes of a reachable Slurm cluster (from :func:`query_cluster`)."""

    nodes: tuple[NodeInfo, ...]
    default_partition: str | None
    time_limits: dict[str, int | None]
    """Partition -> its time limit in seconds (None: unlimited)."""

    @property
    def partitions(self) -> list[str]:
        return list(self.time_limits)

    def describe_partitions(self) -> str:
        return ", ".join(p + ("*" if p == self.default_partition else "") for p in self.partitions)


_GPU_GRES_RE = re.compile(r"(?:^|,)gpu(?::[^:,(]+)?:(\d+)")


def _gres_gpus(gres: str) -> int:
    """GPUs in a node's ``sinfo %G`` gres string (``(null)``, ``gpu:4``, ``gpu:a100:4(S:0-1)``)."""
    return sum(int(n) for n in _GPU_GRES_RE.findall(gres.strip()))


def slurm_seconds(text: str) -> int | None:
    """Seconds of a Slurm time (``MM``, ``MM:SS``, ``HH:MM:SS``, ``D-HH[:MM[:SS]]``); None for
    ``infinite``/``UNLIMITED``; ValueError for anything else."""
    value = text.strip()
    if value.lower() in ("infinite", "unlimited"):
        return None
    days = 0
    if "-" in value:
        day_text, value = value.split("-", 1)
        days = int(day_text)
        parts = [int(p) for p in value.split(":")]
        while len(parts) < 3:
            parts.append(0)  # D-HH, D-HH:MM
    else:
        parts = [int(p) for p in value.split(":")]
        parts = {1: [0, parts[0], 0], 2: [0, *parts]}.get(len(parts), parts)  # MM, MM:SS
    if len(parts) != 3:
        raise ValueError(f"not a Slurm time: {text!r}")
    hours, minutes, seconds = parts
    return ((days * 24 + hours) * 60 + minutes) * 60 + seconds


def _mem_mb(text: str) -> int:
    """Megabytes of a Slurm memory size (``64G``, ``500M``, ``1000`` = MB)."""
    units = {"K": 1 / 1024, "M": 1, "G": 1024, "T": 1024 * 1024}
    unit = text[-1].upper()
    if unit in units:
        return int(int(text[:-1]) * units[unit])
    return int(text)


_SINFO = ["sinfo", "--noheader", "--Node", "--format=%N|%P|%c|%G|%m|%l"]


def parse_sinfo(text: str) -> ClusterInfo:
    """A :class:`ClusterInfo` from the output of ``sinfo --noheader --Node
    --format=%N|%P|%c|%G|%m|%l`` (one line per node and partition)."""
    nodes: list[NodeInfo] = []
    limits: dict[str, int | None] = {}
    default = None
    for line in text.splitlines():
        if not line.strip():
            continue
        fields = line.strip().split("|")
        if len(fields) != 6:
            raise ValueError(f"unexpected sinfo line {line!r}")
        name, partition, cpus, gres, memory, limit = fields
        if partition.endswith("*"):
            partition = partition[:-1]
            default = partition
        cpu_count = int(cpus.rstrip("+"))
        mem = int(memory.rstrip("+")) if memory.rstrip("+").isdigit() else None
        nodes.append(NodeInfo(name, partition, cpu_count, _gres_gpus(gres), mem))
        limits[partition] = slurm_seconds(limit)
    return ClusterInfo(tuple(nodes), default, limits)


def query_cluster(timeout_s: float = 30.0) -> ClusterInfo | None:
    """Partitions and nodes of the Slurm cluster reachable from here, or None when there is
    none (no ``sinfo`` on PATH, no controller answering, or output that cannot be read)."""
    if shutil.which("sinfo") is None:
        return None
    try:
        done = subprocess.run(
            _SINFO, capture_output=True, text=True, timeout=timeout_s, stdin=subprocess.DEVNULL
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    try:
        info = parse_sinfo(done.stdout)
    except ValueError:
        return None
    return info if info.nodes else None


def _partition_problem(options: SlurmOptions, info: ClusterInfo, partition: str) -> str | None:
    """Why the request can never run in ``partition`` (None when it can)."""
    nodes = [n for n in info.nodes if n.partition == partition]
    where = f"partition {partition!r}"
    most_cpus = max(n.cpus for n in nodes)
    if options.cpus_per_task > most_cpus:
        return (
            f"--cpus-per-task {options.cpus_per_task} exceeds the CPUs per node of {where} "
            f"(at most {most_cpus}); use --cpus-per-task {most_cpus} or fewer"
        )
    most_gpus = max(n.gpus for n in nodes)
    if options.gpus_per_node > most_gpus:
        if most_gpus == 0:
            return (
                f"--gpus-per-node {options.gpus_per_node}: {where} has no GPUs; use "
                "--gpus-per-node 0 (CPU nodes) or a GPU partition"
            )
        return (
            f"--gpus-per-node {options.gpus_per_node} exceeds the GPUs per node of {where} "
            f"(at most {most_gpus}); use --gpus-per-node {most_gpus} or fewer"
        )
    if options.mem is not None:
        known = [n.memory_mb for n in nodes if n.memory_mb is not None]
        if known and _mem_mb(options.mem) > max(known):
            return (
                f"--mem {options.mem} exceeds the memory per node of {where} "
                f"(at most {max(known)}M); ask for {max(known)}M or less"
            )
    fitting = [
        n
        for n in nodes
        if n.cpus >= options.cpus_per_task
        and n.gpus >= options.gpus_per_node
        and (options.mem is None or n.memory_mb is None or n.memory_mb >= _mem_mb(options.mem))
    ]
    if options.nodes > len(fitting):
        return (
            f"--nodes {options.nodes} exceeds the {len(fitting)} node(s) of {where} with "
            f"{options.cpus_per_task} CPUs and {options.gpus_per_node} GPUs; use --nodes "
            f"{len(fitting)} or fewer"
        )
    limit = info.time_limits.get(partition)
    if limit is not None and slurm_seconds(options.time) > limit:
        return (
            f"--time {options.time} exceeds the time limit of {where} "
            f"({_format_seconds(limit)}); use --time {_format_seconds(limit)} or less"
        )
    return None


def _format_seconds(seconds: int) -> str:
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    text = f"{hours:02d}:{minutes:02d}:{secs:02d}"
    return f"{days}-{text}" if days else text


def check_against_cluster(options: SlurmOptions, info: ClusterInfo) -> None:
    """Raise a one-line ``ValueError`` naming the limit when ``options`` asks for something
    that no partition it may run in offers (the job would pend forever or be refused)."""
    if options.partition is not None:
        wanted = options.partition.split(",")
        unknown = [p for p in wanted if p not in info.time_limits]
        if unknown:
            raise ValueError(
                f"partition {unknown[0]!r} does not exist on this cluster (partitions: "
                f"{info.describe_partitions()}); choose one of them"
            )
    elif info.default_partition is not None:
        wanted = [info.default_partition]
    else:
        raise ValueError(
            f"this cluster has no default partition: pass --partition (one of "
            f"{info.describe_partitions()})"
        )
    problems = [_partition_problem(options, info, p) for p in wanted]
    if all(problems):
        raise ValueError("; ".join(p for p in problems if p))


def fit_cpus_to_cluster(
    options: SlurmOptions, info: ClusterInfo, wanted: int = 8
) -> tuple[int, str | None]:
    """The CPUs per task to ask for when the user named none: ``wanted``, or fewer when no
    node of the job's partition(s) has that many; returns ``(cpus, note)``."""
    names = (
        options.partition.split(",")
        if options.partition is not None
        else [info.default_partition]
        if info.default_partition
        else info.partitions
    )
    cpus = [n.cpus for n in info.nodes if n.partition in names]
    if not cpus or max(cpus) >= wanted:
        return wanted, None
    return max(cpus), (
        f"--cpus-per-task {max(cpus)}: the most a node of partition(s) {','.join(names)} has "
        f"(default {wanted})"
    )
