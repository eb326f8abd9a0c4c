"""An AWS IAM policy evaluator for one request: identity policies, a resource policy, a KMS key policy.

Pure Python (no moto, no boto3). moto's own evaluator ignores ``Resource`` and ``Condition``; this one
follows AWS's documented evaluation logic for a request, as these pages of the IAM User Guide describe it:

* "Policy evaluation logic" and "Determining whether a request is allowed or denied within an account"
  (explicit deny first; then, in one account, an allow in an identity-based OR a resource-based policy);
* "Cross-account policy evaluation logic" (another account's principal needs both the identity-based and
  the resource-based allow);
* "IAM JSON policy elements: Effect / Action / NotAction / Resource / NotResource / Principal / NotPrincipal /
  Condition / Version";
* "IAM JSON policy elements: Condition operators" (a key absent from the request: the condition is false,
  except that negated operators — ``StringNotEquals``, ``StringNotLike``, ``ArnNotLike``, … — are TRUE,
  ``...IfExists`` is true and ``Null`` tests presence; several values of a negated operator are NOR-ed);
* "Conditions with multiple context keys or values" and "Set operators for multivalued context keys"
  (``ForAllValues:`` is true when the key is absent or empty, ``ForAnyValue:`` false);
* "IAM policy elements: Variables and tags" (``${aws:username}``, ``${*}``, defaults
  ``${aws:username, 'x'}``; only in ``"Version": "2012-10-17"`` policies — in a policy without that version
  ``${...}`` is literal text, as in AWS, where an absent Version means 2008-10-17);
* AWS KMS Developer Guide, "Key policies in AWS KMS" and "Default key policy" (the key policy is required;
  a statement allowing the account, ``arn:aws:iam::<account>:root``, enables IAM policies);
* "Troubleshoot access denied error messages" (the ``User: … is not authorized to perform: …`` text).

Supported
---------
* ``Statement`` as a dict or a list; ``Effect`` ``Allow``/``Deny``; ``Action``/``NotAction`` (case-insensitive,
  ``*`` and ``?``); ``Resource``/``NotResource`` (case-sensitive glob over the whole ARN, ``*`` and ``?``,
  ``*`` alone matches anything; policy variables substituted, their values taken literally).
  In an identity policy a statement without ``Resource``/``NotResource``, or with ``Principal``, is invalid
  and matches nothing. In a resource policy a statement without ``Resource``/``NotResource`` applies to the
  resource the policy is attached to (so a role's trust policy can be evaluated as a resource policy);
  one without ``Principal``/``NotPrincipal`` matches nothing. A statement with an unknown ``Effect``, both
  ``Action`` and ``NotAction`` or neither, matches nothing.
* ``Principal``/``NotPrincipal``: ``"*"``, ``{"AWS": "*"}`` (everyone, service principals included),
  ``{"AWS": "<account id>"}`` / ``{"AWS": "arn:aws:iam::<account>:root"}`` (every principal of that account),
  a role ARN (the role and its sessions), a user ARN, an assumed-role session ARN, ``{"Service": "…"}``;
  strings or lists. A requester is the set of its identities — account, role, session (or account, user);
  ``Principal`` matches when one of them is listed. ``NotPrincipal`` with ``Deny`` applies unless ALL of them
  are listed (which is why AWS's examples list the account, the role and the session);
  ``NotPrincipal`` with ``Allow`` applies when none is listed.
  Not supported: ``Federated``, ``CanonicalUser`` (match nothing), partial wildcards in principals.
* Condition operators (names case-insensitive): ``StringEquals``, ``StringNotEquals``, ``StringEqualsIgnoreCase``,
  ``StringNotEqualsIgnoreCase``, ``StringLike``, ``StringNotLike``; ``ArnEquals``, ``ArnLike``, ``ArnNotEquals``,
  ``ArnNotLike`` (as in AWS, ArnEquals = ArnLike: each of the 6 colon-separated parts is matched separately with
  ``*``/``?``, so a ``*`` never spans a ``:`` before the resource part); ``Bool``; ``NumericEquals``,
  ``NumericNotEquals``, ``NumericLessThan``, ``NumericLessThanEquals``, ``NumericGreaterThan``,
  ``NumericGreaterThanEquals``; ``DateEquals``, ``DateNotEquals``, ``DateLessThan``, ``DateLessThanEquals``,
  ``DateGreaterThan``, ``DateGreaterThanEquals`` (ISO 8601 or epoch seconds); ``IpAddress``, ``NotIpAddress``
  (CIDR or address, IPv4 and IPv6); ``BinaryEquals`` (compares the base64 text); ``Null``. Every one takes
  the ``IfExists`` suffix (absent key → true) and the ``ForAllValues:``/``ForAnyValue:`` prefixes.
  Operators AND-ed, keys AND-ed, the values of one key OR-ed (NOR-ed for a negated operator).
  Without a set prefix, a multivalued request key matches when any of its values does (a negated operator:
  when none does). Condition key names are case-insensitive; values case-sensitive except ``...IgnoreCase``
  and ``Bool``. Policy variables are substituted in ``String*``, ``Arn*`` and ``Bool`` values.
* An unknown operator or set prefix: the statement does not match (nothing is logged).
* Context: the caller's keys, plus keys derived from the principal when the caller does not give them:
  ``aws:PrincipalArn`` (the role ARN for a session), ``aws:PrincipalAccount``, ``aws:PrincipalType``,
  ``aws:username`` (users), ``aws:PrincipalIsAWSService`` and ``aws:PrincipalServiceName`` (services).
  ``aws:CurrentTime``/``aws:EpochTime``/``aws:SecureTransport``/``aws:SourceIp``… come from the caller only.

Not supported
-------------
Permissions boundaries, session policies, SCPs/RCPs, KMS grants, ACLs, ``aws:MultiFactorAuth*`` semantics beyond
plain keys, per-service validation of which keys an action supports, policy validation errors (a malformed
document raises ``ValueError``; a merely invalid statement matches nothing).
"""
from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache

__all__ = ["Decision", "Principal", "evaluate", "principal_for_session", "service_principal"]

IDENTITY_DENY = "with an explicit deny in an identity-based policy"
RESOURCE_DENY = "with an explicit deny in a resource-based policy"


@dataclass(frozen=True)
class Principal:
    arn: str                 # session/user/role ARN, or the service name for a service principal
    account: str             # "" for a service principal
    role_arn: str | None = None   # for an assumed-role session: the role's ARN
    service: bool = False    # True for an AWS service principal


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str   # AWS's words after the resource in an AccessDenied message; "" when allowed

    def message(self, principal: Principal, action: str, resource: str) -> str:
        """AWS's AccessDenied text (a service principal is named by its service name, as AWS does)."""
        text = f"User: {principal.arn} is not authorized to perform: {action} on resource: {resource}"
        return f"{text} {self.reason}" if self.reason else text


def no_identity_allow(action: str) -> str:
    return f"because no identity-based policy allows the {action} action"


def no_resource_allow(action: str) -> str:
    return f"because no resource-based policy allows the {action} action"


# ---------------------------------------------------------------------------------------------- principals

_SESSION = re.compile(
    r"^arn:(?P<partition>[^:]+):sts::(?P<account>\d{12}):assumed-role/(?P<role>[^/]+)/(?P<session>.+)$")
_IAM = re.compile(r"^arn:(?P<partition>[^:]+):iam::(?P<account>\d{12}):(?P<kind>user|role|root)(?:/(?P<rest>.+))?$")


def service_principal(name: str) -> Principal:
    """An AWS service principal, e.g. ``service_principal("cloudwatch.amazonaws.com")``."""
    return Principal(arn=name, account="", service=True)


def principal_for_session(arn: str) -> Principal:
    """The principal behind an ARN STS would report for a caller.

    ``arn:aws:sts::123456789012:assumed-role/Role/session`` → a session of ``arn:aws:iam::123456789012:role/Role``
    (a role path is not part of a session ARN, so the role ARN is built without one);
    ``arn:aws:iam::123456789012:user/alice`` → the user; ``arn:aws:iam::…:role/R`` → the role itself;
    ``arn:aws:iam::…:root`` → the account; ``x.amazonaws.com`` → `service_principal`.
    """
    if m := _SESSION.match(arn):
        role = f"arn:{m['partition']}:iam::{m['account']}:role/{m['role']}"
        return Principal(arn=arn, account=m["account"], role_arn=role)
    if m := _IAM.match(arn):
        if m["kind"] == "root" and m["rest"] is None:
            return Principal(arn=arn, account=m["account"])
        if m["kind"] == "user" and m["rest"]:
            return Principal(arn=arn, account=m["account"])
        if m["kind"] == "role" and m["rest"]:
            return Principal(arn=arn, account=m["account"], role_arn=arn)
    if re.fullmatch(r"[a-z0-9.-]+\.amazonaws\.com(\.cn)?", arn):
        return service_principal(arn)
    raise ValueError(f"not a principal ARN: {arn!r}")


def _identities(principal: Principal) -> set[str]:
    """Every name the principal goes by in a Principal element."""
    if principal.service:
        return {"service:" + principal.arn.lower()}
    names = {"aws:" + principal.arn, "account:" + principal.account}
    if principal.role_arn:
        names.add("aws:" + principal.role_arn)
    return names


def _principal_names(element) -> set[str] | None:
    """The names a Principal/NotPrincipal element lists (``None`` for "*", everyone)."""
    if element == "*":
        return None
    if not isinstance(element, dict):
        raise ValueError(f"malformed Principal: {element!r}")
    names: set[str] = set()
    for kind, values in element.items():
        for value in _patterns(values, "Principal"):
            if kind == "AWS":
                if value == "*":
                    return None
                if re.fullmatch(r"\d{12}", value):
                    names.add("account:" + value)
                elif (m := _IAM.match(value)) and m["kind"] == "root" and m["rest"] is None:
                    names.add("account:" + m["account"])
                else:
                    names.add("aws:" + value)
            elif kind == "Service":
                names.add("service:" + value.lower())
            # Federated, CanonicalUser: name no principal here
    return names


def _principal_matches(statement: dict, principal: Principal, effect: str) -> bool:
    if "Principal" in statement:
        names = _principal_names(statement["Principal"])
        return names is None or bool(_identities(principal) & names)
    if "NotPrincipal" in statement:
        names = _principal_names(statement["NotPrincipal"])
        if names is None:
            return False
        identities = _identities(principal)
        if effect == "Deny":
            return not identities <= names
        return not identities & names
    return False


# ----------------------------------------------------------------------------------------------- patterns

@lru_cache(maxsize=4096)
def _glob(pattern: str, ignore_case: bool) -> re.Pattern:
    body = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile(body, re.DOTALL | (re.IGNORECASE if ignore_case else 0))


_VARIABLE = re.compile(r"\$\{([^}]*)\}")
_SPECIAL = {"*": "*", "?": "?", "$": "$"}


class _Unresolved(Exception):
    pass


def _pieces(text: str, ctx: Mapping[str, list[str]] | None) -> list[tuple[bool, str]]:
    """``text`` split into (is_literal_wildcard_text, text) pieces with policy variables substituted.

    Substituted values (and ``${*}``, ``${?}``, ``${$}``) are literal; ``ctx`` None: no substitution.
    Raises _Unresolved when a variable names no single-valued key and has no default."""
    if ctx is None or "${" not in text:
        return [(True, text)]
    out: list[tuple[bool, str]] = []
    pos = 0
    for m in _VARIABLE.finditer(text):
        out.append((True, text[pos:m.start()]))
        pos = m.end()
        inner = m.group(1).strip()
        if inner in _SPECIAL:
            out.append((False, _SPECIAL[inner]))
            continue
        name, _, default = inner.partition(",")
        values = ctx.get(name.strip().lower())
        if values is not None and len(values) == 1:
            out.append((False, values[0]))
            continue
        default = default.strip()
        if len(default) >= 2 and default[0] == default[-1] == "'":
            out.append((False, default[1:-1]))
            continue
        raise _Unresolved(name)
    out.append((True, text[pos:]))
    return out


def _like(value: str, pattern: str, ctx: Mapping[str, list[str]] | None, ignore_case: bool = False) -> bool:
    """Glob match of ``value`` against ``pattern`` (``*``, ``?``), variables substituted literally."""
    try:
        pieces = _pieces(pattern, ctx)
    except _Unresolved:
        return False
    if len(pieces) == 1:
        return _glob(pattern, ignore_case).fullmatch(value) is not None
    body = "".join(_glob(text, ignore_case).pattern if wild else re.escape(text) for wild, text in pieces)
    return re.fullmatch(body, value, re.DOTALL | (re.IGNORECASE if ignore_case else 0)) is not None


def _substitute(text: str, ctx: Mapping[str, list[str]] | None) -> str | None:
    try:
        return "".join(t for _, t in _pieces(text, ctx))
    except _Unresolved:
        return None


def _strings(value) -> list:
    return [value] if isinstance(value, str | bool | int | float) else list(value)


def _patterns(value, element: str) -> list[str]:
    """The strings of an Action/Resource element (an unresolved intrinsic such as ``Fn::GetAtt`` is refused)."""
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise ValueError(f"{element} must be a string or a list of strings: {value!r}")
    return values


def _action_matches(patterns, action: str) -> bool:
    return any(_glob(p, True).fullmatch(action) for p in _patterns(patterns, "Action"))


def _resource_matches(patterns, resource: str, variables) -> bool:
    return any(p == "*" or _like(resource, p, variables) for p in _patterns(patterns, "Resource"))


# --------------------------------------------------------------------------------------------- conditions

def _text(value) -> str:
    if not isinstance(value, str | bool | int | float):
        raise ValueError(f"a condition value must be a string, number or boolean: {value!r}")
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _date(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def _compare(parse, test):
    def compare(value: str, policy: str, _ctx) -> bool:
        a, b = parse(value), parse(policy)
        return a is not None and b is not None and test(a, b)
    return compare


def _arn_like(value: str, pattern: str, ctx) -> bool:
    if pattern == "*":
        return True
    want, have = pattern.split(":", 5), value.split(":", 5)
    if len(want) != 6 or len(have) != 6:
        return False
    return all(_like(h, w, ctx) for h, w in zip(have, want))


def _ip_in(value: str, policy: str, _ctx) -> bool:
    try:
        address = ipaddress.ip_address(value.strip())
        network = ipaddress.ip_network(policy.strip(), strict=False)
    except ValueError:
        return False
    return address.version == network.version and address in network


def _string_equals(ignore_case: bool):
    def compare(value: str, policy: str, ctx) -> bool:
        resolved = _substitute(policy, ctx)
        if resolved is None:
            return False
        return value.lower() == resolved.lower() if ignore_case else value == resolved
    return compare


def _bool(value: str, policy: str, ctx) -> bool:
    resolved = _substitute(policy, ctx)
    return resolved is not None and value.lower() == resolved.lower()


# name (lower case) → (positive comparison, negated, policy variables substituted)
_OPERATORS: dict[str, tuple] = {}


def _op(name: str, compare, negated: bool = False, variables: bool = False) -> None:
    _OPERATORS[name.lower()] = (compare, negated, variables)


_op("StringEquals", _string_equals(False), variables=True)
_op("StringNotEquals", _string_equals(False), negated=True, variables=True)
_op("StringEqualsIgnoreCase", _string_equals(True), variables=True)
_op("StringNotEqualsIgnoreCase", _string_equals(True), negated=True, variables=True)
_op("StringLike", lambda v, p, ctx: _like(v, p, ctx), variables=True)
_op("StringNotLike", lambda v, p, ctx: _like(v, p, ctx), negated=True, variables=True)
_op("ArnEquals", _arn_like, variables=True)
_op("ArnLike", _arn_like, variables=True)
_op("ArnNotEquals", _arn_like, negated=True, variables=True)
_op("ArnNotLike", _arn_like, negated=True, variables=True)
_op("Bool", _bool, variables=True)
_op("BinaryEquals", lambda v, p, _ctx: v == p)
for _kind, _parse in (("Numeric", _number), ("Date", _date)):
    _op(f"{_kind}Equals", _compare(_parse, lambda a, b: a == b))
    _op(f"{_kind}NotEquals", _compare(_parse, lambda a, b: a == b), negated=True)
    _op(f"{_kind}LessThan", _compare(_parse, lambda a, b: a < b))
    _op(f"{_kind}LessThanEquals", _compare(_parse, lambda a, b: a <= b))
    _op(f"{_kind}GreaterThan", _compare(_parse, lambda a, b: a > b))
    _op(f"{_kind}GreaterThanEquals", _compare(_parse, lambda a, b: a >= b))
_op("IpAddress", _ip_in)
_op("NotIpAddress", _ip_in, negated=True)


class _UnknownOperator(Exception):
    pass


def _key_holds(operator: str, key: str, policy_values, ctx: Mapping[str, list[str]], variables) -> bool:
    name = operator
    qualifier = ""
    for prefix in ("forallvalues:", "foranyvalue:"):
        if name.lower().startswith(prefix):
            qualifier, name = prefix, name[len(prefix):]
    if_exists = name.lower().endswith("ifexists")
    if if_exists:
        name = name[:-len("ifexists")]
    wanted = [_text(v) for v in ([policy_values] if not isinstance(policy_values, list) else policy_values)]
    request = ctx.get(key.lower())
    absent = not request   # None, or an empty set of values

    if name.lower() == "null":
        if qualifier or if_exists:
            raise _UnknownOperator(operator)
        return any(w.lower() == ("true" if absent else "false") for w in wanted)
    if name.lower() not in _OPERATORS:
        raise _UnknownOperator(operator)
    compare, negated, substitutes = _OPERATORS[name.lower()]
    if absent:
        if if_exists or qualifier == "forallvalues:":
            return True
        if qualifier == "foranyvalue:":
            return False
        return negated
    variables = variables if substitutes else None

    def matches(value: str) -> bool:
        return any(compare(value, w, variables) for w in wanted)

    if qualifier == "forallvalues:":
        return all(matches(v) != negated for v in request)
    if qualifier == "foranyvalue:":
        return any(matches(v) != negated for v in request)
    hit = any(matches(v) for v in request)
    return hit != negated


def _conditions_hold(condition, ctx: Mapping[str, list[str]], variables) -> bool:
    if not condition:
        return True
    if not isinstance(condition, dict) or not all(isinstance(keys, dict) for keys in condition.values()):
        raise ValueError(f"malformed Condition: {condition!r}")
    try:
        return all(_key_holds(operator, key, values, ctx, variables)
                   for operator, keys in condition.items() for key, values in keys.items())
    except _UnknownOperator:
        return False


# -------------------------------------------------------------------------------------------- statements

def _document(policy: dict | str) -> dict:
    if isinstance(policy, str):
        try:
            policy = json.loads(policy)
        except json.JSONDecodeError as e:
            raise ValueError(f"policy is not JSON: {e}") from e
    if not isinstance(policy, dict):
        raise ValueError(f"policy is not a JSON object: {policy!r}")
    return policy


def _statements(policy: dict | str):
    """(statement, substitute-variables?) for each statement of a policy. A policy given as text is
    parsed and checked once per distinct text (the text is the key: it cannot go stale), not at
    every request that reads it."""
    if isinstance(policy, str):
        return _parsed_statements(policy)
    return _checked_statements(_document(policy))


@lru_cache(maxsize=1024)
def _parsed_statements(text: str) -> tuple:
    return _checked_statements(_document(text))


def _checked_statements(document: dict) -> tuple:
    statements = document.get("Statement", [])
    if isinstance(statements, dict):
        statements = [statements]
    if not isinstance(statements, list) or not all(isinstance(s, dict) for s in statements):
        raise ValueError(f"malformed Statement: {statements!r}")
    variables = document.get("Version") == "2012-10-17"
    for statement in statements:
        _check(statement)
    return tuple((s, variables) for s in statements)


def _check(statement: dict) -> None:
    """Raise ValueError for an element no policy can hold (e.g. an unresolved ``Fn::GetAtt``)."""
    for element in ("Action", "NotAction", "Resource", "NotResource"):
        if element in statement:
            _patterns(statement[element], element)
    for element in ("Principal", "NotPrincipal"):
        if element in statement:
            _principal_names(statement[element])
    condition = statement.get("Condition")
    if condition:
        if not isinstance(condition, dict) or not all(isinstance(keys, dict) for keys in condition.values()):
            raise ValueError(f"malformed Condition: {condition!r}")
        for keys in condition.values():
            for values in keys.values():
                for value in values if isinstance(values, list) else [values]:
                    _text(value)


def _statement_matches(statement: dict, action: str, resource: str, ctx, variables: bool, *,
                       resource_policy: bool) -> bool:
    """Action, Resource and Condition of a statement match the request (Principal is checked apart)."""
    if statement.get("Effect") not in ("Allow", "Deny"):
        return False
    if ("Action" in statement) == ("NotAction" in statement):
        return False
    if "Action" in statement:
        if not _action_matches(statement["Action"], action):
            return False
    elif _action_matches(statement["NotAction"], action):
        return False
    vars_ctx = ctx if variables else None
    if "Resource" in statement:
        if not _resource_matches(statement["Resource"], resource, vars_ctx):
            return False
    elif "NotResource" in statement:
        if _resource_matches(statement["NotResource"], resource, vars_ctx):
            return False
    elif not resource_policy:
        return False   # an identity policy's statement needs Resource
    return _conditions_hold(statement.get("Condition"), ctx, vars_ctx)


def _matching(policies, principal, action, resource, ctx, *, resource_policy: bool):
    """(effect, statement) of each statement of ``policies`` that applies to this request."""
    for policy in policies:
        for statement, variables in _statements(policy):
            if resource_policy:
                if "Principal" not in statement and "NotPrincipal" not in statement:
                    continue
            elif "Principal" in statement or "NotPrincipal" in statement:
                continue   # invalid in an identity policy
            if not _statement_matches(statement, action, resource, ctx, variables, resource_policy=resource_policy):
                continue
            if resource_policy and not _principal_matches(statement, principal, statement["Effect"]):
                continue
            yield statement["Effect"], statement


def _context(principal: Principal, context: Mapping[str, str | Sequence[str]]) -> dict[str, list[str]]:
    ctx: dict[str, list[str]] = {}
    if principal.service:
        ctx["aws:principalisawsservice"] = ["true"]
        ctx["aws:principalservicename"] = [principal.arn]
    else:
        ctx["aws:principalisawsservice"] = ["false"]
        ctx["aws:principalaccount"] = [principal.account]
        if principal.role_arn and principal.arn != principal.role_arn:
            ctx["aws:principalarn"] = [principal.role_arn]
            ctx["aws:principaltype"] = ["AssumedRole"]
        else:
            ctx["aws:principalarn"] = [principal.arn]
            m = _IAM.match(principal.arn)
            kind = m["kind"] if m else ""
            ctx["aws:principaltype"] = [{"user": "User", "root": "Account", "role": "Role"}.get(kind, "User")]
            if kind == "user":
                ctx["aws:username"] = [principal.arn.rsplit("/", 1)[-1]]
    for key, value in context.items():
        ctx[key.lower()] = [_text(v) for v in _strings(value)] if value is not None else []
    return ctx


def _names_directly(statement: dict, principal: Principal) -> bool:
    """A (matching) key policy statement names the principal other than through its account."""
    if "Principal" not in statement:
        return True   # NotPrincipal
    names = _principal_names(statement["Principal"])
    return names is None or bool((_identities(principal) - {"account:" + principal.account}) & names)


def _names_account(statement: dict, account: str) -> bool:
    """A key policy statement's Principal names ``account`` itself (the statement enables IAM policies)."""
    element = statement.get("Principal")
    if not isinstance(element, dict):
        return False
    names = _principal_names(element)
    return names is not None and "account:" + account in names


# ---------------------------------------------------------------------------------------------- evaluate

def evaluate(principal: Principal, action: str, resource: str, *,
             identity_policies: Sequence[dict | str] = (),
             resource_policy: dict | str | None = None,
             resource_account: str | None = None,
             key_policy: bool = False,
             context: Mapping[str, str | Sequence[str]] = {},  # noqa: B006 - read only
             ) -> Decision:
    """Whether ``principal`` may perform ``action`` on ``resource``, and AWS's reason when it may not.

    A malformed policy (not JSON, a Statement that is not a dict or list, an element holding an unresolved
    CloudFormation intrinsic) raises ``ValueError``; a well-formed but invalid statement matches nothing."""
    if isinstance(identity_policies, str | dict):
        raise TypeError("identity_policies is a sequence of policies, not one policy")
    ctx = _context(principal, context)
    identity = [] if principal.service else list(
        _matching(identity_policies, principal, action, resource, ctx, resource_policy=False))
    on_resource = [] if resource_policy is None else list(
        _matching([resource_policy], principal, action, resource, ctx, resource_policy=True))

    if any(effect == "Deny" for effect, _ in identity):
        return Decision(False, IDENTITY_DENY)
    if any(effect == "Deny" for effect, _ in on_resource):
        return Decision(False, RESOURCE_DENY)

    identity_allows = any(effect == "Allow" for effect, _ in identity)
    allows = [statement for effect, statement in on_resource if effect == "Allow"]
    same_account = not principal.service and (resource_account is None or resource_account == principal.account)

    if key_policy:
        # The key policy must allow: the principal itself, or its account (which enables IAM policies).
        direct = any(_names_directly(s, principal) for s in allows)
        via_account = not principal.service and any(_names_account(s, principal.account) for s in allows)
        if principal.service:
            return Decision(True, "") if direct else Decision(False, no_resource_allow(action))
        if (direct and same_account) or ((direct or via_account) and identity_allows):
            return Decision(True, "")
        if direct or via_account:
            return Decision(False, no_identity_allow(action))
        return Decision(False, no_resource_allow(action))

    if principal.service:
        return Decision(True, "") if allows else Decision(False, no_resource_allow(action))
    if same_account:
        if identity_allows or allows:
            return Decision(True, "")
        return Decision(False, no_identity_allow(action))
    # Another account's principal: both its identity policies and the resource policy must allow.
    if not identity_allows:
        return Decision(False, no_identity_allow(action))
    if not allows:
        return Decision(False, no_resource_allow(action))
    return Decision(True, "")
