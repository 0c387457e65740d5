"""One module per `mdbd` sub-command; each exposes `register(subparsers)`."""
