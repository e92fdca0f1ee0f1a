"""What every smoothbench command line shares: one-line errors with exit code 2, and a Hydra main
whose composition errors (`model=foo`, `steps=abc`, `foo=1`) read the same way.

    from smoothbench.cli import run_hydra_main
    def main() -> None:
        register_configs()
        run_hydra_main("smoothbench-train", hydra_main)

Only what is light to import lives here: `--help` and Tab completion must stay fast.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any, NoReturn

# Exit codes: 2 = the command was refused (bad input; nothing changed), 1 = the run failed,
# 128 + signal number = stopped by a signal (a rerun of the same command resumes).
EXIT_REFUSED = 2
EXIT_FAILED = 1


def fail(prog: str, message: str, code: int = EXIT_REFUSED) -> NoReturn:
    """Print `prog: error: message` as one line on stderr and exit with `code`."""
    print(f"{prog}: error: {one_line(message)}", file=sys.stderr, flush=True)
    sys.exit(code)


def one_line(text: str) -> str:
    """Collapse a multi-line message into one line (tabs and newlines become separators)."""
    parts = [p.strip() for p in str(text).replace("\t", " ").splitlines()]
    return "; ".join(p for p in parts if p)


def hydra_error_message(err: BaseException) -> str:
    """One line for a Hydra composition or override error, in terms of the config keys."""
    from hydra.errors import MissingConfigException, OverrideParseException
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError, ValidationError

    text = str(err)
    cause = err.__cause__
    if isinstance(err, MissingConfigException):
        # "In 'train': Could not find 'model/foo'\n\nAvailable options in 'model':\n\tdln\n..."
        lines = [line.strip() for line in text.splitlines()]
        head = lines[0].split(": ", 1)[-1]
        options, group = [], None
        for line in lines[1:]:
            if line.startswith("Available options in"):
                group = line.split("'")[1] if "'" in line else "group"
                continue
            if line.startswith("Config search path"):
                break
            if group is not None and line:
                options.append(line)
        if options:
            return f"{head}; {group} is one of: {', '.join(options)}"
        return head
    if isinstance(err, OverrideParseException):
        return f"cannot parse the override ({text.splitlines()[0]})"
    if isinstance(cause, (ConfigKeyError, ConfigAttributeError)):
        key = getattr(cause, "full_key", None) or text.split("'")[1]
        return f"unknown key {key!r}; `--cfg job` lists the allowed keys"
    if isinstance(cause, ValidationError):
        key = getattr(cause, "full_key", None)
        message = str(cause).splitlines()[0]
        return f"{key}: {message}" if key else message
    return one_line(text)


def _os_error_message(err: OSError) -> str:
    """E.g. "cannot create or write '/runs/x' (Read-only file system)"."""
    where = f" {err.filename!r}" if err.filename else ""
    return f"cannot create or write{where} ({err.strerror or err})"


# Flags after which Hydra runs no job (and some of which take the next argument as a value).
_NO_JOB_FLAGS = ("-h", "--help", "--hydra-help", "--version", "-c", "--cfg", "-i", "--info")
_NO_JOB_FLAGS += ("-sc", "--shell-completion", "-p", "--package")


def _defer_hydra_output(argv: list[str]) -> None:
    """Add `hydra.output_subdir=null` to the command line's overrides (in place).

    Hydra's parser takes the overrides as one contiguous group of positional arguments, so it
    goes right before the first of them (or at the end when there is none).
    """
    args = argv[1:]
    if any(a.split("=")[0] in _NO_JOB_FLAGS for a in args):
        return
    if any(a.lstrip("+~").startswith("hydra.output_subdir=") for a in args):
        return  # the user chose where Hydra writes it: Hydra writes it then
    first = next((i for i, a in enumerate(args) if "=" in a and not a.startswith("-")), None)
    position = len(argv) if first is None else first + 1
    argv.insert(position, "hydra.output_subdir=null")


# The command line as typed, before `_defer_hydra_output` added its override (provenance.json
# records what the user ran, not the internal override)
_typed_argv: list[str] | None = None


def typed_command_line() -> list[str]:
    """This process's command line as the user typed it."""
    return list(_typed_argv if _typed_argv is not None else sys.argv)


# Hydra needs this to let errors that happen before the task function (composition, creating
# the run dir, opening the log file) reach us as exceptions instead of printing its own report.
_FULL_ERROR = "HYDRA_FULL_ERROR"


def run_hydra_main(
    prog: str, hydra_main: Callable[[], Any], *, defer_hydra_output: bool = False
) -> None:
    """Run a `@hydra.main` function; Hydra's own errors become one line on stderr and exit 2.

    With `defer_hydra_output`, Hydra does not write `.hydra/` itself (`hydra.output_subdir=null`):
    the task function writes it once the command is accepted, so a refused command leaves an
    existing run dir as it was. A KeyboardInterrupt outside the task is one line, exit 130.
    """
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    global _typed_argv
    _typed_argv = list(sys.argv)
    if defer_hydra_output:
        _defer_hydra_output(sys.argv)
    previous = os.environ.get(_FULL_ERROR)
    os.environ[_FULL_ERROR] = "1"
    try:
        hydra_main()
    except (HydraException, OmegaConfBaseException) as err:
        fail(prog, hydra_error_message(err))
    except OSError as err:  # the run dir or its log file cannot be created
        fail(prog, _os_error_message(err))
    except ValueError as err:  # logging's "Unable to configure handler 'file'" (read-only disk)
        if not isinstance(err.__cause__, OSError):
            raise
        fail(prog, _os_error_message(err.__cause__))
    except KeyboardInterrupt:
        fail(prog, "interrupted", code=130)
    finally:
        if previous is None:
            os.environ.pop(_FULL_ERROR, None)
        else:
            os.environ[_FULL_ERROR] = previous
