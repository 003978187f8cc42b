"""CLI commands: each module here is one subcommand (see ``unprovision.cli`` for the contract)."""
