"""The local lab: real SSH hosts on one machine, in Linux namespaces (``harden lab``).

Modules: model (hosts, addresses, the state file), host (one host's namespace,
sshd and keys), loopback (the 127.0.0.x addresses on lo), clientfiles
(known_hosts, ssh_config, inventory), fleet (up, down, status, ssh).
"""
