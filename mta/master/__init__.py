"""The master process manager (Postfix's master(8)): runs each master.cf service as separate processes.

Modules, one role each:

- check: load and check main.cf, master.cf, mail_owner and setgid_group; create directories.
- listen: the services' listening sockets (inet TCP, unix under the queue directory).
- spawn: fork a child with clean signals and descriptors, then run mta.skeleton.run_daemon.
- service: per-service state: children, status pipe, lifeline, wakeup timer, throttling.
- main: the master's event loop, reload and stop (entry point master_main).
- pidfile: queue_directory/pid/master.pid and the lock that proves a master is live.
- control: what ``mta start|stop|reload|status|flush`` do to a master.

The child side lives outside this package, with the modules daemons share:
mta.skeleton (registry, DaemonContext, run_daemon) and mta.skeleton_loop (the
single-server and trigger-server loops and the status reports).
"""
