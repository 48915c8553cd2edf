"""The `vig` command. Each area of the package adds its own verbs through `add_commands(subparsers)`;
they are imported lazily so `vig --help` stays fast and one broken area cannot hide the others."""
import argparse
import importlib
import sys

# module path -> the verbs it provides (for the help text when a module fails to import)
COMMAND_MODULES = [
    "vig.models.commands",      # info, convert, predict
    "vig.models.export_command",  # export (ONNX)
    "vig.train.commands",       # train, eval
    "vig.bench.commands",       # bench
    "vig.viz.commands",         # viz attn / viz erf
    "vig.downstream.commands",  # det, seg
]


from vig.errors import UsageError
from vig.ranks import is_first_process, launch_rank


class CommandParser(argparse.ArgumentParser):
    """A (sub)command's parser. It reports its own unknown arguments, so the message names `vig train` and shows its
    usage: argparse would hand them up to the top parser, whose error names only `vig`. And it takes no abbreviated
    flags: `--epoch 1` silently meaning `--epochs 1` hides typos, and a new flag can make an old abbreviation
    ambiguous. Nested commands (`vig det train`) get this class too, as add_subparsers defaults to the parent's."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **{**kwargs, "allow_abbrev": False})

    def parse_known_args(self, args=None, namespace=None):
        namespace, extras = super().parse_known_args(args, namespace)
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return namespace, extras


def build_parser():
    parser = argparse.ArgumentParser(prog="vig", description="ViG backbones: train, evaluate, benchmark, visualise.",
                                     allow_abbrev=False)
    from vig import __version__
    parser.add_argument("--version", action="version", version=f"vig {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=CommandParser)
    sub.required = True
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name == name:  # that area is not built yet
                continue
            raise
        module.add_commands(sub)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args) or 0
    except UsageError as e:
        # under torchrun every rank says it: a mistake in one rank's share of the data is that rank's alone, and a
        # silent exit would leave the others waiting
        rank = launch_rank()
        print(f"vig {args.command}: error: {'' if rank == '0' else f'[rank {rank}] '}{e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # one line instead of a traceback from deep in a step; each command writes its files atomically, so what
        # it had not finished is simply not there (vig train says what survives itself)
        if is_first_process():
            print(f"vig {args.command}: interrupted", file=sys.stderr)
        return 130  # the shell's code for a SIGINT death


if __name__ == "__main__":
    sys.exit(main())
