"""The command-line subcommands of the products, wired by `tidescale.cli`."""
