"""The pyinfra side of bench/provision.py: the same 4 files and handlers as the Ansible playbook.

TEMPLATES (environment) is a directory holding HOST/main.cf.j2 ... (the files harden renders).
"""

import os

from pyinfra import host
from pyinfra.operations import files, server

TEMPLATES = os.environ["TEMPLATES"]
MTA = "/opt/mailgate-mta/current/bin/mta -c /etc/postfix"


def put(name: str):
    return files.template(
        name=f"/etc/postfix/{name}",
        src=f"{TEMPLATES}/{host.name}/{name}.j2",
        dest=f"/etc/postfix/{name}",
        user="root",
        group="root",
        mode="644",
    )


main_cf = put("main.cf")
master_cf = put("master.cf")
aliases = put("aliases")
access = put("access")
server.shell(name="newaliases", commands=[f"{MTA} newaliases"], _if=aliases.did_change)
server.shell(name="postmap", commands=[f"{MTA} postmap hash:/etc/postfix/access"], _if=access.did_change)
server.shell(name="reload", commands=[f"{MTA} reload"], _if=lambda: main_cf.did_change() or master_cf.did_change())
