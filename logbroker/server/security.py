"""The server's security state: who logged in (SASL), what they may do (ACLs), how fast they
may go (quotas), and the per-host limits. One `Security` per server, shared by both listeners.

Credentials and ACLs are files under the security directory (`<data_dir>/security` unless set),
written by `logbroker users` and `logbroker acls`; the server picks up changes within a second
(`refresh`), so neither needs a restart.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from logbroker.errors import (
    ClusterAuthorizationFailedError,
    GroupAuthorizationFailedError,
    LogbrokerError,
    TopicAuthorizationFailedError,
    UnknownMemberIdError,
)
from logbroker.security.acls import CLUSTER, AclStore, Authorizer
from logbroker.security.login import Login
from logbroker.security.quotas import ConnectionCounter, LoginThrottle, Quotas, QuotaSettings
from logbroker.security.users import UserStore, security_dir
from logbroker.server.config import ServerConfig

__all__ = ["ANONYMOUS", "Need", "Security"]

logger = logging.getLogger("logbroker.security")

#: The principal of every connection of a broker that does not require logins.
ANONYMOUS = "User:ANONYMOUS"

#: What a request needs: (operation, resource type, resource name).
Need = tuple[str, str, str]

_DENIED: dict[str, type[LogbrokerError]] = {
    "topic": TopicAuthorizationFailedError,
    "group": GroupAuthorizationFailedError,
    "cluster": ClusterAuthorizationFailedError,
}


class Security:
    def __init__(self, config: ServerConfig, *, tls: bool, data_dir: str | None = None) -> None:
        self.config = config
        self.tls = tls
        #: `security_dir`, or the `security` folder of the broker's data directory (of ./data
        #: for a memory broker, as `logbroker serve --memory` and `logbroker users` agree).
        self.directory = config.security_dir or security_dir(data_dir or "./data")
        self.authenticate = config.authenticate
        self.authorize = config.authorize
        self.users = UserStore(self.directory)
        self.acls = AclStore(self.directory)
        self.super_users = [name.strip() for name in config.super_users.split(",") if name.strip()]
        self._decoy_key: bytes | None = None
        if self.authenticate:
            self.users.load()
            self._decoy_key = self.users.decoy_key()
        self._authorizer: Authorizer | None = None
        if self.authorize:
            self.acls.load()
            self._authorizer = self.acls.authorizer(self.super_users)
        self.quotas = Quotas(
            QuotaSettings(
                produce_bytes_per_second=config.quota_produce_bytes,
                fetch_bytes_per_second=config.quota_fetch_bytes,
                requests_per_second=config.quota_requests,
            )
        )
        self.login_throttle = LoginThrottle(base_delay=config.login_failure_delay)
        self.per_host = ConnectionCounter(config.max_connections_per_ip)
        #: The principal each native group member joined as, (group, member id) -> principal: a
        #: member id is no key to another principal's records (GroupPoll, Nack, commits).
        self.member_principals: dict[tuple[str, str], str] = {}

    def describe(self) -> str:
        users = len(self.users.usernames()) if self.authenticate else 0
        rules = len(self.acls.rules()) if self.authorize else 0
        return (
            f"authentication={'SASL (' + str(users) + ' user(s))' if self.authenticate else 'off'} "
            f"authorization={'ACLs (' + str(rules) + ' rule(s), deny by default)' if self.authorize else 'off'} "
            f"security_dir={self.directory}"
        )

    def refresh(self) -> None:
        """Take up changes `logbroker users|acls` made to the files (the server calls this
        every second)."""
        if self.authenticate:
            self.users.reload_if_changed()
        if self.authorize and self.acls.reload_if_changed():
            self._authorizer = self.acls.authorizer(self.super_users)
            logger.info("ACLs reloaded: %d rule(s)", len(self.acls.rules()))

    def first_principal(self, certificate_name: str | None = None) -> str | None:
        """A new connection's principal: None when it must log in first; else the common name
        of its client certificate (mutual TLS), as `User:<CN>`; else ANONYMOUS."""
        if self.authenticate:
            return None
        return f"User:{certificate_name}" if certificate_name else ANONYMOUS

    def new_login(self) -> Login:
        return Login(self.users, self.tls, self._decoy_key)

    def may(self, principal: str, operation: str, resource_type: str, name: str) -> bool:
        authorizer = self._authorizer
        if authorizer is None:
            return True
        if authorizer.allowed(principal, operation, resource_type, name):
            return True
        # Creating a topic is allowed by CREATE on the topic or on the cluster, as in Kafka.
        return operation == "create" and authorizer.allowed(principal, "create", "cluster", CLUSTER)

    def may_write_somewhere(self, principal: str) -> bool:
        authorizer = self._authorizer
        return authorizer is None or authorizer.allowed_any(principal, "write", "topic")

    def check(self, principal: str, needs: Iterable[Need]) -> None:
        """Raise the authorization error of the first need the principal lacks."""
        if self._authorizer is None:
            return
        for operation, resource_type, name in needs:
            if not self.may(principal, operation, resource_type, name):
                raise _DENIED[resource_type](
                    f"{principal} may not {operation} {resource_type} {name!r}"
                    if resource_type != "cluster"
                    else f"{principal} may not {operation} on the cluster"
                )

    def joined(self, principal: str, group: str, member_id: str) -> None:
        if self.authenticate or self.authorize:
            self.member_principals[group, member_id] = principal

    def check_member(self, principal: str, group: str, member_id: str | None) -> None:
        """Refuse a request naming a member that joined as another principal."""
        owner = self.member_principals.get((group, member_id or ""))
        if owner is not None and owner != principal:
            raise UnknownMemberIdError(f"group {group!r} has no member {member_id!r} of {principal}")

    def prune_members(self, alive: Callable[[str, str], bool]) -> None:
        """Forget the principals of members that left or expired."""
        for key in [key for key in self.member_principals if not alive(*key)]:
            del self.member_principals[key]
