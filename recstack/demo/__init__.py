"""What `recstack demo`'s real-time loop (recstack/cli/demo_loop.py) runs against: the
services as child processes and the waits on them (`services.py`), and the traffic
it sends them over HTTP, simulated users included (`traffic.py`). No console output
here: the loop's steps say what happens, from the callbacks these take."""
