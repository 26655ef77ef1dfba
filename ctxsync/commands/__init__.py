"""One module per `ctxsync` subcommand, each with `register(subparsers)`."""
