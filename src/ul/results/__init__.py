"""The studies of docs/results: which DVC experiments they are, how to run them, how to report them."""
