"""Generate Slurm batch scripts that run ``xas-train train CONFIG`` on one or more nodes.

The scripts are meant to be submitted as is (``sbatch script.sh``). Two launchers are
supported:

``torchrun``
    ``srun`` starts one task per node; every task runs ``torchrun`` with a ``c10d``
    rendezvous on the first node of the allocation. ``torchrun`` starts one process per
    GPU and sets ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``/``MASTER_ADDR``/``MASTER_PORT``.

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
import tempfile
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

__all__ = ["LAUNCHERS", "SlurmOptions", "render_sbatch", "write_sbatch"]

LAUNCHERS: tuple[str, ...] = ("torchrun", "deepspeed")
"""Launchers understood by :func:`render_sbatch`."""

TRAIN_MODULE = "xas_train.cli"
"""Module behind the ``xas-train`` console script (it runs the app when executed with -m)."""

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


@dataclass(frozen=True)
class SlurmOptions:
    """Resources and launch settings for one sbatch script.

    All fields are validated on construction; a bad value raises ``ValueError`` naming the
    value and how to fix it. ``env_setup`` and ``extra_sbatch`` also accept lists (stored as
    tuples).
    """

    nodes: int
    """Number of nodes (>= 1)."""
    gpus_per_node: int
    """GPUs per node (>= 0); one training process per GPU, one per node when 0 (CPU nodes)."""
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
    """CPUs per node-level task; shared by the training processes of a node (OMP_NUM_THREADS)."""
    mem: str | None = None
    """Memory per node, e.g. ``"64G"`` (Slurm's default unit is megabytes); omitted when None."""
    rdzv_port: int = 29500
    """Port for the rendezvous / master on the first node (MASTER_PORT)."""
    env_setup: tuple[str, ...] = ()
    """Shell lines run before launching, e.g. ``"module load cuda"``, ``"source .venv/bin/activate"``."""
    extra_sbatch: tuple[str, ...] = ()
    """Extra sbatch options without the ``#SBATCH`` prefix, e.g. ``"--qos=high"``."""
    output: str = "%x-%j.out"
    """Slurm ``--output`` pattern. Relative paths are relative to the submit directory, and the
    directory must exist when the job starts (Slurm does not create it), hence the default
    writes to the submit directory itself."""
    train_command: str = "xas-train train"
    """Command that takes the config path as its last argument (see the module docstring)."""

    def __post_init__(self) -> None:
        _check_int("nodes", self.nodes, 1)
        _check_int("gpus_per_node", self.gpus_per_node, 0)
        _check_int("cpus_per_task", self.cpus_per_task, 1)
        _check_int("rdzv_port", self.rdzv_port, 1, 65535)
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

    @property
    def nproc_per_node(self) -> int:
        """Training processes per node: one per GPU, or one on CPU-only nodes."""
        return max(self.gpus_per_node, 1)


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
    if options.gpus_per_node > 0:
        lines.append(f"#SBATCH --gpus-per-node={options.gpus_per_node}")
    lines += [
        f"#SBATCH --cpus-per-task={options.cpus_per_task}",
        f"#SBATCH --time={options.time}",
        f"#SBATCH --output={options.output}",
    ]
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


def _torchrun_lines(target: list[str], mode: str) -> list[str]:
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
        "    " + _quote_all([*mode_flag, *target]),
    ]


def _deepspeed_lines(target: list[str], mode: str) -> list[str]:
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
        "    " + _quote_all([*mode_flag, *target]),
    ]


def render_sbatch(config_path: str | os.PathLike[str], options: SlurmOptions) -> str:
    """Return the text of an sbatch script that trains with ``config_path`` under ``options``.

    ``config_path`` is made absolute against the current directory (it does not have to exist
    on this machine) and shell-quoted. The script exports ``MASTER_ADDR`` (first node of the
    allocation), ``MASTER_PORT`` (``options.rdzv_port``) and ``OMP_NUM_THREADS`` (the node's
    CPUs divided among its processes, at least 1), runs ``options.env_setup`` and then
    launches ``options.train_command CONFIG`` with the chosen launcher.
    """
    if not isinstance(options, SlurmOptions):
        raise ValueError(f"options must be a SlurmOptions, got {type(options).__name__}")
    config = _absolute_config(config_path)
    mode, target = _launch_target(options.train_command)
    target = [*target, config]
    nproc = options.nproc_per_node
    device = f"{options.gpus_per_node} GPU(s)" if options.gpus_per_node else "1 CPU process"
    human_command = _quote_all([*shlex.split(options.train_command), config])

    lines = [
        "#!/bin/bash",
        f"# Generated by xas_train.slurm (xas-train {_generator_version()}); edit freely.",
        f"# Runs: {human_command}",
        f"#   on {options.nodes} node(s) x {device} per node, launched with {options.launcher}.",
        "# Submit from the directory the job should run in:  sbatch THIS_SCRIPT.sh",
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
        '            "(SlurmOptions.env_setup, e.g. source .venv/bin/activate)" >&2',
        "        exit 127",
        "    }",
        "}",
        "",
    ]
    if options.env_setup:
        lines += ["# Environment setup", *options.env_setup, ""]
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
        f"export MASTER_PORT={options.rdzv_port}",
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
        'echo "job $SLURM_JOB_ID: ${#NODES[@]} node(s) [${NODES[*]}], $NPROC_PER_NODE process(es)'
        ' per node, master $MASTER_ADDR:$MASTER_PORT, OMP_NUM_THREADS=$OMP_NUM_THREADS"',
        "",
    ]
    if options.launcher == "torchrun":
        lines += _torchrun_lines(target, mode)
    else:
        lines += _deepspeed_lines(target, mode)
    return "\n".join(lines) + "\n"


def write_sbatch(
    config_path: str | os.PathLike[str],
    options: SlurmOptions,
    out_path: str | os.PathLike[str],
) -> Path:
    """Render the script and write it to ``out_path`` atomically, executable (mode 0o755).

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
        os.chmod(tmp, 0o755)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target
