"""Reusable widgets of the app. They render the state they are given and do no I/O: the screens list
the directory, call the engine and pass the results in."""
