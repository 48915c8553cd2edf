"""The process's place under torchrun, read from the environment it sets (RANK): usable before, and without, a
process group, so messages that every process would print can come from the first alone."""
import os


def launch_rank() -> str:
    return os.environ.get("RANK", "0")


def is_first_process() -> bool:
    return launch_rank() == "0"
