"""Render a host's configuration files from harden/templates/ and parse every one back before use.

ENGINE. One jinja2 Environment: StrictUndefined (a missing variable is an
error, never an empty string), no autoescaping (these are not HTML),
trailing newlines kept, block tags trimmed. A template error names the
template and line: ``templates/main.cf.j2:12: 'mydomain' is undefined``.

CHECK. The rendered main.cf, master.cf, aliases, access (and transport) are
written to a scratch directory and parsed back with the MTA's own
configuration layer (harden.validate); an error there names the template,
the rendered file's line and its text. Nothing is pushed to a host before
its files pass.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from harden.errors import TemplateError
from harden.settings import GatewaySettings
from harden.validate import validate_config_dir

TEMPLATES = Path(__file__).with_name("templates")
CONFIG_DIRECTORY = "/etc/postfix"
QUEUE_DIRECTORY = "/var/spool/postfix"

def template_environment(directory: Path = TEMPLATES) -> jinja2.Environment:
    """The jinja2 Environment for a template directory (see ENGINE)."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(directory)),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )


_ENV = template_environment()


def render(name: str, context: dict[str, Any], env: jinja2.Environment | None = None) -> str:
    """Render templates/NAME with context; TemplateError names the template and line."""
    try:
        return (env or _ENV).get_template(name).render(context)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"templates/{exc.name or name}:{exc.lineno}: {exc.message}") from None
    except jinja2.TemplateNotFound:
        raise TemplateError(f"templates/{name}: no such template") from None
    except jinja2.UndefinedError as exc:
        raise TemplateError(f"templates/{name}:{_error_line(name, exc)}: {exc.message}") from None


def _error_line(name: str, exc: BaseException) -> int:
    """The template line an exception raised during rendering came from (jinja2 keeps it in the traceback)."""
    line = 0
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename.endswith(name):
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


@dataclass(frozen=True)
class ServiceLine:
    """One master.cf line as the template prints it."""

    service: str
    type: str
    private: str
    unpriv: str
    chroot: str
    wakeup: str
    maxproc: str
    command: str


def master_services(s: GatewaySettings) -> list[ServiceLine]:
    """The services this MTA runs, with the chroot column from the host's settings."""

    def yn(service: str) -> str:
        return "y" if s.service_chrooted(service) else "n"

    return [
        ServiceLine("smtp", "inet", "n", "-", yn("smtpd"), "-", "-", "smtpd"),
        ServiceLine("pickup", "unix", "n", "-", yn("pickup"), "60", "1", "pickup"),
        ServiceLine("cleanup", "unix", "n", "-", yn("cleanup"), "-", "0", "cleanup"),
        ServiceLine("qmgr", "unix", "n", "-", yn("qmgr"), "300", "1", "qmgr"),
        ServiceLine("showq", "unix", "n", "-", yn("showq"), "-", "-", "showq"),
        ServiceLine("anvil", "unix", "-", "-", yn("anvil"), "-", "1", "anvil"),
        ServiceLine("error", "unix", "-", "-", yn("error"), "-", "-", "error"),
        ServiceLine("retry", "unix", "-", "-", yn("retry"), "-", "-", "error"),
        ServiceLine("discard", "unix", "-", "-", yn("discard"), "-", "-", "discard"),
        ServiceLine("smtp", "unix", "-", "-", yn("smtp"), "-", "-", "smtp"),
        ServiceLine("relay", "unix", "-", "-", yn("smtp"), "-", "-", "smtp"),
        ServiceLine("bounce", "unix", "-", "-", yn("bounce"), "-", "0", "bounce"),
        ServiceLine("defer", "unix", "-", "-", yn("defer"), "-", "0", "bounce"),
        ServiceLine("trace", "unix", "-", "-", yn("trace"), "-", "0", "bounce"),
        ServiceLine("local", "unix", "-", "n", "n", "-", "-", "local"),
        ServiceLine("postdrop", "unix", "n", "-", "n", "-", "-", "postdrop"),
    ]


def gateway_files(s: GatewaySettings, config_directory: str = CONFIG_DIRECTORY,
                  queue_directory: str = QUEUE_DIRECTORY, env: jinja2.Environment | None = None) -> dict[str, str]:
    """Render every configuration file of a host: file name (in config_directory) -> text.

    + env: another template environment (tests; a site's own templates directory).
    """
    context = {"s": s, "config_directory": config_directory, "queue_directory": queue_directory,
               "services": master_services(s)}
    files = {
        "main.cf": render("main.cf.j2", context, env),
        "master.cf": render("master.cf.j2", context, env),
        "aliases": render("aliases.j2", context, env),
        "access": render("access.j2", context, env),
    }
    if s.transport:
        files["transport"] = render("transport.j2", context, env)
    if s.mydestination_file:
        files["mydests"] = render("mydests.j2", context, env)
    return files


_TEMPLATE_OF = {"main.cf": "main.cf.j2", "master.cf": "master.cf.j2", "aliases": "aliases.j2",
                "access": "access.j2", "transport": "transport.j2", "mydests": "mydests.j2"}


def files_check(host: str, files: dict[str, str], config_directory: str = CONFIG_DIRECTORY) -> list[str]:
    """Parse rendered files back with the MTA's configuration layer; return warnings, raise on errors.

    Paths inside the files name config_directory; they are pointed at a scratch
    copy so the check needs nothing on this machine. Table sources (aliases,
    access, transport) are parsed as postalias and postmap would.
    """
    with tempfile.TemporaryDirectory(prefix="harden-render-") as scratch:
        root = Path(scratch)
        for name, text in files.items():
            (root / name).write_text(text.replace(config_directory + "/", f"{root}/"))
        errors: list[str] = []
        findings = validate_config_dir(root)
        warnings: list[str] = []
        for finding in findings:
            if finding.message.startswith("indexed table missing"):
                continue  # the host builds its tables (postmap, postalias) once the files are there
            name = Path(finding.path).name
            template = _TEMPLATE_OF.get(name, name)
            line_text = ""
            if finding.line and name in files:
                lines = files[name].splitlines()
                if 0 < finding.line <= len(lines):
                    line_text = f" [{lines[finding.line - 1].strip()}]"
            text = (f"templates/{template} rendered for {host}: {name}"
                    f"{f', line {finding.line}' if finding.line else ''}: {finding.message}{line_text}")
            (errors if finding.severity == "error" else warnings).append(text)
        if errors:
            raise TemplateError("\n".join(e.replace(scratch, config_directory) for e in errors))
        return [w.replace(scratch, config_directory) for w in warnings]
