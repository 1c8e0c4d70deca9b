"""One module per mta admin command: SUMMARY, add_arguments(parser), run(args) -> exit status."""
