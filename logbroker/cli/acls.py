"""`logbroker acls add|delete|list`: edit the ACL file of a data directory.

The commands work on the file, not through a broker: a running broker picks changes up when it
sees the file change (`AclStore.reload_if_changed`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from logbroker.security.acls import ALL, CLUSTER, OPERATIONS, AclRule, AclStore

from .common import security_dir_options
from .output import json_line

__all__ = ["acls"]

F = TypeVar("F", bound=Callable[..., Any])


def _resource_options(command: F) -> F:
    for option in reversed(
        (
            click.option("--topic", metavar="NAME", help="A topic (or topic name prefix, with --prefix)."),
            click.option("--group", metavar="NAME", help="A consumer group (or prefix, with --prefix)."),
            click.option("--cluster", is_flag=True, help=f"The cluster itself ({CLUSTER})."),
        )
    ):
        command = option(command)
    return command


def _store(security_dir: str) -> AclStore:
    return AclStore(security_dir)


def _resource(topic: str | None, group: str | None, cluster: bool) -> tuple[str, str] | None:
    """(resource type, name) of the resource options given; UsageError if more than one."""
    given = (("topic", topic), ("group", group), ("cluster", CLUSTER if cluster else None))
    chosen = [(kind, name) for kind, name in given if name is not None]
    if len(chosen) > 1:
        raise click.UsageError("give only one of --topic, --group and --cluster")
    return chosen[0] if chosen else None


_operation_choice = click.Choice([*OPERATIONS, ALL])


@click.group()
def acls() -> None:
    """Add, delete and list ACL rules (who may do what on which topic, group or cluster).

    Access is denied unless a rule allows it, and a matching deny beats any allow.
    """


@acls.command("add")
@click.option("--principal", required=True, help="User:<name>, or User:* for everyone.")
@click.option(
    "--operation",
    "operations",
    type=_operation_choice,
    multiple=True,
    required=True,
    help="What the rule allows (or denies). Repeat for several; 'all' means every operation.",
)
@_resource_options
@click.option("--prefix", is_flag=True, help="NAME is a prefix: the rule covers every name starting with it.")
@click.option("--deny", is_flag=True, help="Deny instead of allow (a deny beats any allow).")
@security_dir_options
def add(
    principal: str,
    operations: tuple[str, ...],
    topic: str | None,
    group: str | None,
    cluster: bool,
    prefix: bool,
    deny: bool,
    security_dir: str,
) -> None:
    """Add a rule for each --operation."""
    resource = _resource(topic, group, cluster)
    if resource is None:
        raise click.UsageError("give one of --topic, --group and --cluster")
    kind, name = resource
    rules = [
        AclRule(
            principal=principal,
            operation=operation,
            resource_type=kind,
            name=name,
            pattern="prefix" if prefix else "literal",
            permission="deny" if deny else "allow",
        )
        for operation in dict.fromkeys(operations)
    ]
    for rule in rules:
        try:
            rule.check()
        except ValueError as exc:
            raise click.UsageError(str(exc)) from None
    store = _store(security_dir)
    for rule in rules:
        click.echo(f"added {rule}" if store.add(rule) else f"already present: {rule}")


@acls.command("delete")
@click.option("--principal", help="Only rules for exactly this principal (User:* is a principal too).")
@click.option(
    "--operation", "operations", type=_operation_choice, multiple=True, help="Only rules for this operation."
)
@_resource_options
@click.option("--prefix", is_flag=True, help="Only prefix rules.")
@click.option("--deny", is_flag=True, help="Only deny rules.")
@security_dir_options
def delete(
    principal: str | None,
    operations: tuple[str, ...],
    topic: str | None,
    group: str | None,
    cluster: bool,
    prefix: bool,
    deny: bool,
    security_dir: str,
) -> None:
    """Delete every rule that matches all the filters given (at least one).

    Filters compare the rule's own fields: --topic orders deletes rules written for the name
    orders (literal or prefix), not the prefix or * rules that happen to cover it.
    """
    resource = _resource(topic, group, cluster)
    if principal is None and not operations and resource is None and not prefix and not deny:
        raise click.UsageError("give at least one filter (use `acls list` to see the rules)")

    def matching(rule: AclRule) -> bool:
        return (
            (principal is None or rule.principal == principal)
            and (not operations or rule.operation in operations)
            and (resource is None or (rule.resource_type, rule.name) == resource)
            and (not prefix or rule.pattern == "prefix")
            and (not deny or rule.permission == "deny")
        )

    removed = _store(security_dir).delete(matching)
    if not removed:
        raise click.ClickException("no matching rule")
    for rule in removed:
        click.echo(f"deleted {rule}")


@acls.command("list")
@click.option("--principal", help="Only rules for exactly this principal.")
@_resource_options
@click.option("--json", "as_json", is_flag=True, help="A JSON array of rules.")
@security_dir_options
def list_(
    principal: str | None,
    topic: str | None,
    group: str | None,
    cluster: bool,
    as_json: bool,
    security_dir: str,
) -> None:
    """List rules, in the order they were added."""
    resource = _resource(topic, group, cluster)
    rules = [
        rule
        for rule in _store(security_dir).rules()
        if (principal is None or rule.principal == principal)
        and (resource is None or (rule.resource_type, rule.name) == resource)
    ]
    if as_json:
        click.echo(json_line([rule.to_json() for rule in rules]))
        return
    for rule in rules:
        click.echo(str(rule))
