"""localcloud.policy: AWS's IAM evaluation logic, rule by rule, and on the statements Shipyard synthesizes.

Each case would fail if its rule were implemented wrong (the mirror case is beside it). The statements in
`TestShipyardStatements` are copied from the synthesized template (``cdk synth``), with the intrinsic
functions (``Fn::GetAtt``, ``Fn::Join``, ``Ref``) written out as the literal ARNs they resolve to.
"""
import json

import pytest

from localcloud.policy import Decision, Principal, evaluate, principal_for_session, service_principal

ACCT = "123456789012"
OTHER = "210987654321"
ROLE = f"arn:aws:iam::{ACCT}:role/TrainRole"
SESSION = f"arn:aws:sts::{ACCT}:assumed-role/TrainRole/shipyard-train"
ME = principal_for_session(SESSION)
ALICE = principal_for_session(f"arn:aws:iam::{ACCT}:user/alice")
STRANGER = principal_for_session(f"arn:aws:sts::{OTHER}:assumed-role/Intruder/s")
CLOUDWATCH = service_principal("cloudwatch.amazonaws.com")
EVENTS = service_principal("events.amazonaws.com")

BUCKET = "arn:aws:s3:::shipyard-data"
OBJECT = BUCKET + "/datasets/iris/v1.csv"
TABLE = f"arn:aws:dynamodb:us-east-1:{ACCT}:table/Registry"
TOPIC = f"arn:aws:sns:us-east-1:{ACCT}:Alarms"
KEY = f"arn:aws:kms:us-east-1:{ACCT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"


def doc(*statements):
    return {"Version": "2012-10-17", "Statement": list(statements)}


def allow(action, resource="*", **extra):
    return {"Effect": "Allow", "Action": action, "Resource": resource, **extra}


def deny(action, resource="*", **extra):
    return {"Effect": "Deny", "Action": action, "Resource": resource, **extra}


def allowed(action, resource, *policies, principal=ME, **kwargs):
    return evaluate(principal, action, resource, identity_policies=policies, **kwargs).allowed


# ------------------------------------------------------------------------------------------------ principals

class TestPrincipals:
    def test_session(self):
        p = principal_for_session(SESSION)
        assert p == Principal(arn=SESSION, account=ACCT, role_arn=ROLE, service=False)

    def test_session_in_another_partition_keeps_it(self):
        p = principal_for_session("arn:aws-cn:sts::123456789012:assumed-role/R/s")
        assert p.role_arn == "arn:aws-cn:iam::123456789012:role/R"

    def test_user(self):
        assert principal_for_session(f"arn:aws:iam::{ACCT}:user/alice") == Principal(
            arn=f"arn:aws:iam::{ACCT}:user/alice", account=ACCT)

    def test_role_and_root(self):
        assert principal_for_session(ROLE).role_arn == ROLE
        assert principal_for_session(f"arn:aws:iam::{ACCT}:root") == Principal(f"arn:aws:iam::{ACCT}:root", ACCT)

    def test_service(self):
        assert service_principal("sns.amazonaws.com") == Principal("sns.amazonaws.com", "", None, True)
        assert principal_for_session("events.amazonaws.com").service

    @pytest.mark.parametrize("arn", ["", "alice", "arn:aws:s3:::bucket", "arn:aws:iam::123:user/short-account"])
    def test_not_a_principal(self, arn):
        with pytest.raises(ValueError):
            principal_for_session(arn)


# ---------------------------------------------------------------------------------------- action & resource

class TestActionAndResource:
    def test_action_wildcards(self):
        policy = doc(allow("s3:Get*", OBJECT))
        assert allowed("s3:GetObject", OBJECT, policy)
        assert allowed("s3:GetObjectVersion", OBJECT, policy)
        assert not allowed("s3:PutObject", OBJECT, policy)
        assert allowed("anything:AtAll", OBJECT, doc(allow("*", OBJECT)))

    def test_action_question_mark_is_one_character(self):
        policy = doc(allow("sqs:?endMessage"))
        assert allowed("sqs:SendMessage", "*", policy)
        assert not allowed("sqs:SSendMessage", "*", policy)

    def test_action_is_case_insensitive(self):
        assert allowed("s3:GetObject", OBJECT, doc(allow("S3:getobject", OBJECT)))
        assert allowed("SNS:Publish", TOPIC, doc(allow("sns:publish", TOPIC)))

    def test_action_list(self):
        policy = doc(allow(["dynamodb:GetItem", "dynamodb:Query"], TABLE))
        assert allowed("dynamodb:Query", TABLE, policy)
        assert not allowed("dynamodb:Scan", TABLE, policy)

    def test_action_is_not_a_prefix_match(self):
        assert not allowed("s3:GetObjectVersion", OBJECT, doc(allow("s3:GetObject", OBJECT)))

    def test_not_action(self):
        policy = doc({"Effect": "Allow", "NotAction": "s3:Delete*", "Resource": "*"})
        assert allowed("s3:GetObject", OBJECT, policy)
        assert not allowed("s3:DeleteObject", OBJECT, policy)

    def test_resource_wildcards(self):
        policy = doc(allow("s3:GetObject", BUCKET + "/datasets/*"))
        assert allowed("s3:GetObject", OBJECT, policy)
        assert not allowed("s3:GetObject", BUCKET + "/models/iris/model.onnx", policy)
        assert not allowed("s3:GetObject", BUCKET, policy)  # the bucket is not under its own /datasets/*

    def test_resource_question_mark(self):
        policy = doc(allow("s3:GetObject", BUCKET + "/v?.csv"))
        assert allowed("s3:GetObject", BUCKET + "/v1.csv", policy)
        assert not allowed("s3:GetObject", BUCKET + "/v10.csv", policy)

    def test_resource_is_case_sensitive(self):
        assert not allowed("s3:GetObject", OBJECT, doc(allow("s3:GetObject", OBJECT.upper())))

    def test_star_alone_matches_every_resource(self):
        assert allowed("xray:PutTraceSegments", "*", doc(allow("xray:PutTraceSegments", "*")))
        assert allowed("s3:GetObject", OBJECT, doc(allow("s3:GetObject", "*")))

    def test_a_request_on_star_is_not_matched_by_a_specific_resource(self):
        assert not allowed("xray:PutTraceSegments", "*", doc(allow("xray:PutTraceSegments", BUCKET)))

    def test_regex_characters_are_literal(self):
        policy = doc(allow("s3:GetObject", BUCKET + "/a.b+(c)"))
        assert allowed("s3:GetObject", BUCKET + "/a.b+(c)", policy)
        assert not allowed("s3:GetObject", BUCKET + "/aXb+(c)", policy)

    def test_not_resource(self):
        policy = doc({"Effect": "Allow", "Action": "s3:*", "NotResource": BUCKET + "/secret/*"})
        assert allowed("s3:GetObject", OBJECT, policy)
        assert not allowed("s3:GetObject", BUCKET + "/secret/key", policy)

    def test_statement_without_resource_is_invalid_in_an_identity_policy(self):
        assert not allowed("s3:GetObject", OBJECT, doc({"Effect": "Allow", "Action": "s3:GetObject"}))

    def test_statement_with_principal_is_invalid_in_an_identity_policy(self):
        assert not allowed("s3:GetObject", OBJECT, doc(allow("s3:GetObject", OBJECT, Principal="*")))

    def test_both_or_neither_action_and_not_action_is_invalid(self):
        both = {"Effect": "Allow", "Action": "s3:*", "NotAction": "s3:Delete*", "Resource": "*"}
        neither = {"Effect": "Allow", "Resource": "*"}
        assert not allowed("s3:GetObject", OBJECT, doc(both))
        assert not allowed("s3:GetObject", OBJECT, doc(neither))

    def test_effect_is_allow_or_deny(self):
        assert not allowed("s3:GetObject", OBJECT, doc({"Effect": "allow", "Action": "*", "Resource": "*"}))

    def test_statement_may_be_a_dict_and_policy_a_json_string(self):
        policy = json.dumps({"Version": "2012-10-17", "Statement": allow("s3:GetObject", OBJECT)})
        assert allowed("s3:GetObject", OBJECT, policy)

    def test_malformed_policy_raises(self):
        with pytest.raises(ValueError):
            evaluate(ME, "s3:GetObject", OBJECT, identity_policies=["{not json"])
        with pytest.raises(ValueError):
            evaluate(ME, "s3:GetObject", OBJECT, identity_policies=[{"Statement": "nope"}])

    @pytest.mark.parametrize("statement", [
        allow("s3:GetObject", {"Fn::GetAtt": ["Bucket", "Arn"]}),
        allow({"Ref": "Action"}, OBJECT),
        allow("s3:PutObject", {"Fn::GetAtt": ["Bucket", "Arn"]}),   # raised even when the action does not match
        allow("s3:GetObject", OBJECT, Condition={"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}),
        allow("s3:GetObject", OBJECT, Condition={"StringEquals": "not a mapping of keys"}),
    ])
    def test_unresolved_intrinsics_raise(self, statement):
        with pytest.raises(ValueError):
            evaluate(ME, "s3:GetObject", OBJECT, identity_policies=[doc(statement)])

    def test_unresolved_principal_raises(self):
        with pytest.raises(ValueError):
            evaluate(ME, "s3:GetObject", OBJECT, resource_policy=doc(allow("s3:*", Principal={"AWS": {"Ref": "X"}})))

    def test_one_policy_for_many_is_refused(self):
        with pytest.raises(TypeError):
            evaluate(ME, "s3:GetObject", OBJECT, identity_policies=doc(allow("s3:*")))

    def test_several_identity_policies_are_pooled(self):
        assert allowed("s3:GetObject", OBJECT, doc(allow("s3:PutObject", OBJECT)), doc(allow("s3:GetObject", OBJECT)))


# ------------------------------------------------------------------------------------------------- decision

class TestDecision:
    def test_implicit_deny(self):
        d = evaluate(ME, "s3:GetObject", OBJECT)
        assert d == Decision(False, "because no identity-based policy allows the s3:GetObject action")

    def test_allowed_has_no_reason(self):
        assert evaluate(ME, "s3:GetObject", OBJECT, identity_policies=[doc(allow("s3:*"))]) == Decision(True, "")

    def test_explicit_deny_beats_allow(self):
        d = evaluate(ME, "s3:DeleteObject", OBJECT,
                     identity_policies=[doc(allow("s3:*"), deny("s3:DeleteObject", BUCKET + "/*"))])
        assert d == Decision(False, "with an explicit deny in an identity-based policy")

    def test_explicit_deny_in_another_policy_beats_allow(self):
        d = evaluate(ME, "s3:GetObject", OBJECT, identity_policies=[doc(allow("s3:*")), doc(deny("s3:Get*"))])
        assert not d.allowed

    def test_resource_deny_beats_identity_allow(self):
        d = evaluate(ME, "s3:GetObject", OBJECT, identity_policies=[doc(allow("s3:*"))],
                     resource_policy=doc(deny("s3:*", "*", Principal="*")))
        assert d == Decision(False, "with an explicit deny in a resource-based policy")

    def test_resource_deny_beats_resource_allow(self):
        policy = doc(allow("s3:*", "*", Principal={"AWS": ROLE}), deny("s3:GetObject", OBJECT, Principal="*"))
        assert evaluate(ME, "s3:GetObject", OBJECT, resource_policy=policy).reason.endswith("resource-based policy")

    def test_identity_deny_is_reported_before_resource_deny(self):
        d = evaluate(ME, "s3:GetObject", OBJECT, identity_policies=[doc(deny("*"))],
                     resource_policy=doc(deny("*", "*", Principal="*")))
        assert d.reason == "with an explicit deny in an identity-based policy"

    def test_resource_policy_alone_allows_in_the_same_account(self):
        policy = doc(allow("s3:GetObject", OBJECT, Principal={"AWS": ROLE}))
        assert evaluate(ME, "s3:GetObject", OBJECT, resource_policy=policy).allowed
        assert evaluate(ME, "s3:GetObject", OBJECT, resource_policy=policy, resource_account=ACCT).allowed

    def test_resource_policy_for_someone_else_does_not_allow(self):
        policy = doc(allow("s3:GetObject", OBJECT, Principal={"AWS": f"arn:aws:iam::{ACCT}:role/Other"}))
        d = evaluate(ME, "s3:GetObject", OBJECT, resource_policy=policy)
        assert d == Decision(False, "because no identity-based policy allows the s3:GetObject action")

    def test_resource_policy_statement_without_principal_matches_nothing(self):
        assert not evaluate(ME, "s3:GetObject", OBJECT, resource_policy=doc(allow("s3:*"))).allowed

    def test_resource_policy_statement_without_resource_applies_to_its_resource(self):
        trust = doc({"Effect": "Allow", "Action": "sts:AssumeRole", "Principal": {"Service": "lambda.amazonaws.com"}})
        lam = service_principal("lambda.amazonaws.com")
        assert evaluate(lam, "sts:AssumeRole", ROLE, resource_policy=trust).allowed
        assert not evaluate(EVENTS, "sts:AssumeRole", ROLE, resource_policy=trust).allowed

    def test_cross_account_needs_both(self):
        identity = doc(allow("s3:GetObject", OBJECT))
        resource = doc(allow("s3:GetObject", OBJECT, Principal={"AWS": OTHER}))
        kw = {"resource_account": ACCT}
        assert not evaluate(STRANGER, "s3:GetObject", OBJECT, identity_policies=[identity], **kw).allowed
        d = evaluate(STRANGER, "s3:GetObject", OBJECT, resource_policy=resource, **kw)
        assert d == Decision(False, "because no identity-based policy allows the s3:GetObject action")
        d = evaluate(STRANGER, "s3:GetObject", OBJECT, identity_policies=[identity], resource_policy=doc(), **kw)
        assert d == Decision(False, "because no resource-based policy allows the s3:GetObject action")
        assert evaluate(STRANGER, "s3:GetObject", OBJECT, identity_policies=[identity], resource_policy=resource,
                        **kw).allowed

    def test_identity_policy_alone_does_not_cross_accounts(self):
        d = evaluate(ME, "s3:GetObject", OBJECT, identity_policies=[doc(allow("s3:*"))], resource_account=OTHER)
        assert not d.allowed

    def test_service_principal_needs_the_resource_policy(self):
        publish = doc(allow("sns:Publish", TOPIC))
        d = evaluate(CLOUDWATCH, "sns:Publish", TOPIC, identity_policies=[publish])
        assert d == Decision(False, "because no resource-based policy allows the sns:Publish action")
        d = evaluate(CLOUDWATCH, "sns:Publish", TOPIC, resource_policy=doc(deny("sns:Publish", TOPIC, Principal="*",
                                                                                 Condition={"Bool": {
                                                                                     "aws:SecureTransport": "false"}})))
        assert d == Decision(False, "because no resource-based policy allows the sns:Publish action")
        grant = doc(allow("sns:Publish", TOPIC, Principal={"Service": "cloudwatch.amazonaws.com"}))
        assert evaluate(CLOUDWATCH, "sns:Publish", TOPIC, resource_policy=grant).allowed

    def test_service_principal_ignores_identity_denies(self):
        grant = doc(allow("sns:Publish", TOPIC, Principal={"Service": ["events.amazonaws.com",
                                                                       "cloudwatch.amazonaws.com"]}))
        assert evaluate(CLOUDWATCH, "sns:Publish", TOPIC, identity_policies=[doc(deny("*"))],
                        resource_policy=grant).allowed

    def test_service_is_not_another_service(self):
        grant = doc(allow("sns:Publish", TOPIC, Principal={"Service": "events.amazonaws.com"}))
        assert not evaluate(CLOUDWATCH, "sns:Publish", TOPIC, resource_policy=grant).allowed


class TestMessage:
    def test_access_denied_text(self):
        d = evaluate(ME, "s3:GetObject", OBJECT)
        assert d.message(ME, "s3:GetObject", OBJECT) == (
            f"User: {SESSION} is not authorized to perform: s3:GetObject on resource: {OBJECT} "
            "because no identity-based policy allows the s3:GetObject action")

    def test_explicit_deny_text(self):
        d = evaluate(ALICE, "dynamodb:DeleteItem", TABLE, identity_policies=[doc(deny("dynamodb:*"))])
        assert d.message(ALICE, "dynamodb:DeleteItem", TABLE) == (
            f"User: arn:aws:iam::{ACCT}:user/alice is not authorized to perform: dynamodb:DeleteItem on resource: "
            f"{TABLE} with an explicit deny in an identity-based policy")

    def test_service_principal_is_named_by_its_service(self):
        d = evaluate(CLOUDWATCH, "sns:Publish", TOPIC)
        assert d.message(CLOUDWATCH, "sns:Publish", TOPIC) == (
            f"User: cloudwatch.amazonaws.com is not authorized to perform: sns:Publish on resource: {TOPIC} "
            "because no resource-based policy allows the sns:Publish action")


# ---------------------------------------------------------------------------------------------- principals

def grants(principal_element, who, not_principal=False, effect="Allow"):
    statement = {"Effect": effect, "Action": "s3:GetObject", "Resource": OBJECT,
                 ("NotPrincipal" if not_principal else "Principal"): principal_element}
    return evaluate(who, "s3:GetObject", OBJECT, resource_policy=doc(statement),
                    identity_policies=[doc(allow("s3:*"))] if effect == "Deny" else ())


class TestPrincipalElement:
    @pytest.mark.parametrize("element", ["*", {"AWS": "*"}, {"AWS": ["*"]}])
    def test_everyone(self, element):
        assert grants(element, ME).allowed
        assert grants(element, ALICE).allowed
        assert grants(element, CLOUDWATCH).allowed

    @pytest.mark.parametrize("element", [{"AWS": ACCT}, {"AWS": f"arn:aws:iam::{ACCT}:root"},
                                         {"AWS": ["999999999999", ACCT]}])
    def test_account(self, element):
        assert grants(element, ME).allowed
        assert grants(element, ALICE).allowed
        assert not grants(element, STRANGER).allowed
        assert not grants(element, CLOUDWATCH).allowed

    def test_role_matches_its_sessions_only(self):
        assert grants({"AWS": ROLE}, ME).allowed
        assert grants({"AWS": ROLE}, principal_for_session(ROLE)).allowed
        assert not grants({"AWS": ROLE}, principal_for_session(
            f"arn:aws:sts::{ACCT}:assumed-role/TrainRoleX/s")).allowed
        assert not grants({"AWS": ROLE}, ALICE).allowed

    def test_session(self):
        assert grants({"AWS": SESSION}, ME).allowed
        assert not grants({"AWS": SESSION}, principal_for_session(
            f"arn:aws:sts::{ACCT}:assumed-role/TrainRole/another-session")).allowed

    def test_user(self):
        assert grants({"AWS": [f"arn:aws:iam::{ACCT}:user/alice"]}, ALICE).allowed
        assert not grants({"AWS": f"arn:aws:iam::{ACCT}:user/bob"}, ALICE).allowed

    def test_service(self):
        assert grants({"Service": "cloudwatch.amazonaws.com"}, CLOUDWATCH).allowed
        assert grants({"Service": ["cloudwatch.amazonaws.com"]}, CLOUDWATCH).allowed
        assert not grants({"Service": "cloudwatch.amazonaws.com"}, ME).allowed

    def test_federated_names_nobody_here(self):
        assert not grants({"Federated": "cognito-identity.amazonaws.com"}, ME).allowed

    def test_not_principal_deny_spares_only_a_fully_listed_principal(self):
        # AWS: with NotPrincipal and Deny, list the account, the role and the session to spare a session.
        spared = {"AWS": [f"arn:aws:iam::{ACCT}:root", ROLE, SESSION]}
        assert grants(spared, ME, not_principal=True, effect="Deny").allowed
        assert not grants(spared, ALICE, not_principal=True, effect="Deny").allowed
        assert not grants({"AWS": [ROLE, SESSION]}, ME, not_principal=True, effect="Deny").allowed

    def test_not_principal_allow_grants_everyone_else(self):
        assert grants({"AWS": f"arn:aws:iam::{ACCT}:user/bob"}, ALICE, not_principal=True).allowed
        assert not grants({"AWS": ACCT}, ALICE, not_principal=True).allowed
        assert not grants("*", ALICE, not_principal=True).allowed


# ---------------------------------------------------------------------------------------------- conditions

def holds(condition, context=None, principal=ME):
    """Whether an Allow statement with this Condition matches."""
    policy = doc(allow("s3:GetObject", OBJECT, Condition=condition))
    return evaluate(principal, "s3:GetObject", OBJECT, identity_policies=[policy], context=context or {}).allowed


class TestStringConditions:
    def test_string_equals_is_case_sensitive_and_literal(self):
        assert holds({"StringEquals": {"s3:prefix": "datasets/"}}, {"s3:prefix": "datasets/"})
        assert not holds({"StringEquals": {"s3:prefix": "datasets/"}}, {"s3:prefix": "Datasets/"})
        assert not holds({"StringEquals": {"s3:prefix": "datasets/*"}}, {"s3:prefix": "datasets/iris"})

    def test_ignore_case(self):
        assert holds({"StringEqualsIgnoreCase": {"s3:prefix": "DATASETS/"}}, {"s3:prefix": "datasets/"})
        assert not holds({"StringNotEqualsIgnoreCase": {"s3:prefix": "DATASETS/"}}, {"s3:prefix": "datasets/"})

    def test_values_of_one_key_are_or_ed(self):
        condition = {"StringEquals": {"aws:SourceAccount": [OTHER, ACCT]}}
        assert holds(condition, {"aws:SourceAccount": ACCT})
        assert not holds(condition, {"aws:SourceAccount": "999999999999"})

    def test_negated_values_are_nor_ed(self):
        condition = {"StringNotEquals": {"aws:SourceAccount": [OTHER, ACCT]}}
        assert not holds(condition, {"aws:SourceAccount": ACCT})
        assert holds(condition, {"aws:SourceAccount": "999999999999"})

    def test_keys_and_operators_are_and_ed(self):
        condition = {"StringEquals": {"aws:SourceAccount": ACCT, "s3:prefix": "a"},
                     "Bool": {"aws:SecureTransport": "true"}}
        assert holds(condition, {"aws:SourceAccount": ACCT, "s3:prefix": "a", "aws:SecureTransport": "true"})
        assert not holds(condition, {"aws:SourceAccount": ACCT, "s3:prefix": "b", "aws:SecureTransport": "true"})
        assert not holds(condition, {"aws:SourceAccount": ACCT, "s3:prefix": "a", "aws:SecureTransport": "false"})

    def test_string_like(self):
        condition = {"StringLike": {"s3:prefix": ["datasets/*"]}}
        assert holds(condition, {"s3:prefix": "datasets/iris/"})
        assert holds(condition, {"s3:prefix": "datasets/"})
        assert not holds(condition, {"s3:prefix": "models/"})
        assert holds({"StringLike": {"s3:prefix": "v?"}}, {"s3:prefix": "v1"})
        assert not holds({"StringLike": {"s3:prefix": "v?"}}, {"s3:prefix": "v12"})

    def test_string_like_with_the_key_absent_does_not_match(self):
        assert not holds({"StringLike": {"s3:prefix": "datasets/*"}}, {})
        assert not holds({"StringLike": {"s3:prefix": "*"}}, {})

    def test_negated_operators_hold_when_the_key_is_absent(self):
        for operator in ("StringNotEquals", "StringNotLike", "StringNotEqualsIgnoreCase", "ArnNotEquals",
                         "ArnNotLike", "NumericNotEquals", "DateNotEquals", "NotIpAddress"):
            assert holds({operator: {"aws:Missing": "1"}}, {}), operator
        for operator in ("StringEquals", "StringLike", "StringEqualsIgnoreCase", "ArnEquals", "ArnLike", "Bool",
                         "NumericEquals", "NumericLessThan", "DateGreaterThan", "IpAddress", "BinaryEquals"):
            assert not holds({operator: {"aws:Missing": "1"}}, {}), operator

    def test_string_not_like(self):
        assert holds({"StringNotLike": {"s3:prefix": "secret/*"}}, {"s3:prefix": "datasets/"})
        assert not holds({"StringNotLike": {"s3:prefix": "secret/*"}}, {"s3:prefix": "secret/x"})

    def test_key_names_are_case_insensitive_values_are_not(self):
        assert holds({"StringEquals": {"AWS:SOURCEACCOUNT": ACCT}}, {"aws:sourceaccount": ACCT})
        assert not holds({"StringEquals": {"aws:SourceAccount": "abc"}}, {"aws:SourceAccount": "ABC"})

    def test_unknown_operator_means_no_match(self):
        assert not holds({"StringSortOf": {"s3:prefix": "a"}}, {"s3:prefix": "a"})
        assert not holds({"ForSomeValues:StringEquals": {"s3:prefix": "a"}}, {"s3:prefix": "a"})

    def test_unknown_operator_in_a_deny_does_not_deny(self):
        policy = doc(allow("s3:*"), deny("s3:*", Condition={"StringSortOf": {"s3:prefix": "a"}}))
        assert evaluate(ME, "s3:GetObject", OBJECT, identity_policies=[policy], context={"s3:prefix": "a"}).allowed

    def test_operator_names_are_case_insensitive(self):
        assert holds({"stringequals": {"s3:prefix": "a"}}, {"s3:prefix": "a"})


class TestArnConditions:
    SOURCE = f"arn:aws:cloudwatch:us-east-1:{ACCT}:alarm:Shipyard-Drift-iris"

    def test_arn_like_with_wildcards(self):
        condition = {"ArnLike": {"aws:SourceArn": f"arn:aws:cloudwatch:us-east-1:{ACCT}:alarm:*"}}
        assert holds(condition, {"aws:SourceArn": self.SOURCE})
        assert not holds(condition, {"aws:SourceArn": f"arn:aws:cloudwatch:us-east-1:{OTHER}:alarm:X"})
        assert holds({"ArnLike": {"aws:SourceArn": "arn:aws:cloudwatch:*:*:alarm:Shipyard-*"}},
                     {"aws:SourceArn": self.SOURCE})

    def test_arn_like_matches_part_by_part(self):
        # A * in the region does not span the account: the 6 parts are compared one by one.
        condition = {"ArnLike": {"aws:SourceArn": f"arn:aws:events:*:{ACCT}:rule/x"}}
        assert holds(condition, {"aws:SourceArn": f"arn:aws:events:us-east-1:{ACCT}:rule/x"})
        assert not holds(condition, {"aws:SourceArn": f"arn:aws:events:us-east-1:junk:{ACCT}:rule/x"})

    def test_arn_resource_part_keeps_its_colons(self):
        condition = {"ArnLike": {"aws:SourceArn": f"arn:aws:states:us-east-1:{ACCT}:stateMachine:*"}}
        assert holds(condition, {"aws:SourceArn": f"arn:aws:states:us-east-1:{ACCT}:stateMachine:Pipeline"})
        assert not holds(condition, {"aws:SourceArn": f"arn:aws:states:us-east-1:{ACCT}:activity:Pipeline"})

    def test_arn_equals_is_exact_without_wildcards(self):
        condition = {"ArnEquals": {"aws:SourceArn": self.SOURCE}}
        assert holds(condition, {"aws:SourceArn": self.SOURCE})
        assert not holds(condition, {"aws:SourceArn": self.SOURCE + "2"})

    def test_not_an_arn_does_not_match(self):
        assert not holds({"ArnLike": {"aws:SourceArn": "arn:aws:s3:::*"}}, {"aws:SourceArn": "bucket"})
        assert holds({"ArnNotLike": {"aws:SourceArn": "arn:aws:s3:::*"}}, {"aws:SourceArn": "bucket"})

    def test_arn_not_like(self):
        condition = {"ArnNotLike": {"aws:SourceArn": f"arn:aws:cloudwatch:*:{ACCT}:alarm:*"}}
        assert not holds(condition, {"aws:SourceArn": self.SOURCE})
        assert holds(condition, {"aws:SourceArn": f"arn:aws:cloudwatch:us-east-1:{OTHER}:alarm:X"})


class TestOtherConditions:
    @pytest.mark.parametrize("transport, denied", [("true", False), ("false", True), (None, False)])
    def test_secure_transport_deny(self, transport, denied):
        policy = doc(deny("s3:*", "*", Principal={"AWS": "*"}, Condition={"Bool": {"aws:SecureTransport": "false"}}))
        context = {} if transport is None else {"aws:SecureTransport": transport}
        d = evaluate(ME, "s3:GetObject", OBJECT, identity_policies=[doc(allow("s3:*"))], resource_policy=policy,
                     context=context)
        assert d == (Decision(False, "with an explicit deny in a resource-based policy") if denied
                     else Decision(True, ""))

    def test_bool_values_json_booleans_and_case(self):
        assert holds({"Bool": {"aws:SecureTransport": True}}, {"aws:SecureTransport": "true"})
        assert holds({"Bool": {"aws:SecureTransport": "True"}}, {"aws:SecureTransport": "true"})
        assert holds({"Bool": {"aws:SecureTransport": "true"}}, {"aws:SecureTransport": True})
        assert not holds({"Bool": {"aws:SecureTransport": "true"}}, {"aws:SecureTransport": "false"})

    def test_numeric(self):
        assert holds({"NumericLessThanEquals": {"s3:max-keys": "10"}}, {"s3:max-keys": "10"})
        assert not holds({"NumericLessThan": {"s3:max-keys": "10"}}, {"s3:max-keys": "10"})
        assert holds({"NumericGreaterThan": {"s3:max-keys": 9}}, {"s3:max-keys": "10"})
        assert not holds({"NumericGreaterThanEquals": {"s3:max-keys": "11"}}, {"s3:max-keys": "10"})
        assert holds({"NumericEquals": {"s3:max-keys": "10"}}, {"s3:max-keys": "10.0"})
        assert not holds({"NumericNotEquals": {"s3:max-keys": "10"}}, {"s3:max-keys": "10.0"})
        assert not holds({"NumericEquals": {"s3:max-keys": "10"}}, {"s3:max-keys": "ten"})

    def test_date(self):
        assert holds({"DateLessThan": {"aws:CurrentTime": "2027-01-01T00:00:00Z"}},
                     {"aws:CurrentTime": "2026-12-06T20:00:00Z"})
        assert not holds({"DateGreaterThan": {"aws:CurrentTime": "2027-01-01T00:00:00Z"}},
                         {"aws:CurrentTime": "2026-12-06T20:00:00Z"})
        assert holds({"DateEquals": {"aws:EpochTime": "2026-12-06T20:00:00Z"}}, {"aws:EpochTime": "1796587200"})

    def test_ip_address(self):
        assert holds({"IpAddress": {"aws:SourceIp": ["10.0.0.0/8", "2001:db8::/32"]}}, {"aws:SourceIp": "10.1.2.3"})
        assert holds({"IpAddress": {"aws:SourceIp": "2001:db8::/32"}}, {"aws:SourceIp": "2001:db8::1"})
        assert not holds({"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}, {"aws:SourceIp": "192.168.0.1"})
        assert holds({"NotIpAddress": {"aws:SourceIp": "10.0.0.0/8"}}, {"aws:SourceIp": "192.168.0.1"})
        assert holds({"IpAddress": {"aws:SourceIp": "127.0.0.1"}}, {"aws:SourceIp": "127.0.0.1"})

    def test_if_exists(self):
        condition = {"StringEqualsIfExists": {"aws:SourceAccount": ACCT}}
        assert holds(condition, {})
        assert holds(condition, {"aws:SourceAccount": ACCT})
        assert not holds(condition, {"aws:SourceAccount": OTHER})
        assert not holds({"StringEquals": {"aws:SourceAccount": ACCT}}, {})
        assert holds({"ArnLikeIfExists": {"aws:SourceArn": "arn:aws:sns:*:*:*"}}, {})
        assert holds({"BoolIfExists": {"aws:MultiFactorAuthPresent": "true"}}, {})

    def test_null(self):
        assert holds({"Null": {"aws:TokenIssueTime": "true"}}, {})
        assert not holds({"Null": {"aws:TokenIssueTime": "true"}}, {"aws:TokenIssueTime": "2026-12-06T20:00:00Z"})
        assert holds({"Null": {"aws:TokenIssueTime": "false"}}, {"aws:TokenIssueTime": "2026-12-06T20:00:00Z"})
        assert not holds({"Null": {"aws:TokenIssueTime": False}}, {})
        assert holds({"Null": {"dynamodb:LeadingKeys": "true"}}, {"dynamodb:LeadingKeys": []})


class TestSetOperators:
    LEADING = {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["MODEL#*"]}}

    def test_for_all_values(self):
        assert holds(self.LEADING, {"dynamodb:LeadingKeys": ["MODEL#iris"]})
        assert holds(self.LEADING, {"dynamodb:LeadingKeys": ["MODEL#iris", "MODEL#penguins"]})
        assert not holds(self.LEADING, {"dynamodb:LeadingKeys": ["MODEL#iris", "AUDIT#x"]})
        assert holds(self.LEADING, {"dynamodb:LeadingKeys": "MODEL#iris"})   # one value, given as a string

    def test_for_all_values_holds_when_the_key_is_absent_or_empty(self):
        assert holds(self.LEADING, {})
        assert holds(self.LEADING, {"dynamodb:LeadingKeys": []})

    def test_for_any_value(self):
        condition = {"ForAnyValue:StringEquals": {"aws:TagKeys": ["team", "cost"]}}
        assert holds(condition, {"aws:TagKeys": ["owner", "team"]})
        assert not holds(condition, {"aws:TagKeys": ["owner"]})
        assert not holds(condition, {})
        assert not holds(condition, {"aws:TagKeys": []})

    def test_negated_set_operators(self):
        assert holds({"ForAllValues:StringNotEquals": {"aws:TagKeys": ["secret"]}}, {"aws:TagKeys": ["a", "b"]})
        assert not holds({"ForAllValues:StringNotEquals": {"aws:TagKeys": ["secret"]}},
                         {"aws:TagKeys": ["a", "secret"]})
        assert holds({"ForAnyValue:StringNotEquals": {"aws:TagKeys": ["secret"]}}, {"aws:TagKeys": ["a", "secret"]})
        assert not holds({"ForAnyValue:StringNotEquals": {"aws:TagKeys": ["secret"]}}, {"aws:TagKeys": ["secret"]})

    def test_multivalued_key_without_a_set_operator_matches_any_value(self):
        assert holds({"StringEquals": {"aws:TagKeys": "team"}}, {"aws:TagKeys": ["owner", "team"]})
        assert not holds({"StringNotEquals": {"aws:TagKeys": "team"}}, {"aws:TagKeys": ["owner", "team"]})


class TestPolicyVariables:
    def test_variable_in_resource(self):
        policy = doc(allow("s3:GetObject", BUCKET + "/home/${aws:username}/*"))
        assert allowed("s3:GetObject", BUCKET + "/home/alice/x", policy, principal=ALICE)
        assert not allowed("s3:GetObject", BUCKET + "/home/bob/x", policy, principal=ALICE)
        assert not allowed("s3:GetObject", BUCKET + "/home/alice/x", policy)   # a session has no aws:username

    def test_variable_in_condition_from_the_principal(self):
        condition = {"StringEquals": {"aws:SourceAccount": "${aws:PrincipalAccount}"}}
        assert holds(condition, {"aws:SourceAccount": ACCT})
        assert not holds(condition, {"aws:SourceAccount": OTHER})

    def test_variable_from_context(self):
        policy = doc(allow("dynamodb:GetItem", TABLE, Condition={
            "ForAllValues:StringEquals": {"dynamodb:LeadingKeys": ["${aws:PrincipalTag/team}"]}}))
        ctx = {"aws:PrincipalTag/team": "MODEL#iris", "dynamodb:LeadingKeys": ["MODEL#iris"]}
        assert allowed("dynamodb:GetItem", TABLE, policy, context=ctx)
        assert not allowed("dynamodb:GetItem", TABLE, policy, context={**ctx, "dynamodb:LeadingKeys": ["MODEL#x"]})

    def test_substituted_value_is_literal(self):
        policy = doc(allow("s3:GetObject", BUCKET + "/${aws:PrincipalTag/dir}/x"))
        assert not allowed("s3:GetObject", BUCKET + "/anything/x", policy, context={"aws:PrincipalTag/dir": "*"})
        assert allowed("s3:GetObject", BUCKET + "/*/x", policy, context={"aws:PrincipalTag/dir": "*"})

    def test_special_characters_and_defaults(self):
        assert allowed("s3:GetObject", BUCKET + "/a*b", doc(allow("s3:GetObject", BUCKET + "/a${*}b")))
        assert not allowed("s3:GetObject", BUCKET + "/aXb", doc(allow("s3:GetObject", BUCKET + "/a${*}b")))
        policy = doc(allow("s3:GetObject", BUCKET + "/${aws:username, 'nobody'}/*"))
        assert allowed("s3:GetObject", BUCKET + "/nobody/x", policy)

    def test_no_variables_without_version_2012(self):
        policy = {"Statement": [allow("s3:GetObject", BUCKET + "/home/${aws:username}/*")]}
        assert not allowed("s3:GetObject", BUCKET + "/home/alice/x", policy, principal=ALICE)
        assert allowed("s3:GetObject", BUCKET + "/home/${aws:username}/x", policy, principal=ALICE)

    def test_caller_context_overrides_derived_keys(self):
        condition = {"StringEquals": {"aws:PrincipalArn": ROLE}}
        assert holds(condition, {})
        assert not holds(condition, {"aws:PrincipalArn": "arn:aws:iam::123456789012:role/Else"})
        assert holds({"Bool": {"aws:PrincipalIsAWSService": "false"}}, {})


# --------------------------------------------------------------------------------------------------- KMS

def kms(principal, key_statements, identity=(), context=None, action="kms:Decrypt", **kwargs):
    return evaluate(principal, action, KEY, identity_policies=identity, resource_policy=doc(*key_statements),
                    key_policy=True, context=context or {}, **kwargs)


ROOT_STATEMENT = {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCT}:root"}, "Action": "kms:*",
                  "Resource": "*"}


class TestKeyPolicy:
    def test_root_delegation_needs_an_identity_allow(self):
        assert kms(ME, [ROOT_STATEMENT], identity=[doc(allow("kms:Decrypt", KEY))]).allowed
        d = kms(ME, [ROOT_STATEMENT])
        assert d == Decision(False, "because no identity-based policy allows the kms:Decrypt action")

    def test_account_id_form_of_root(self):
        statement = {**ROOT_STATEMENT, "Principal": {"AWS": ACCT}}
        assert kms(ME, [statement], identity=[doc(allow("kms:*", "*"))]).allowed
        assert not kms(ME, [statement]).allowed

    def test_without_root_delegation_identity_policies_do_not_count(self):
        other = {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCT}:role/Admin"}, "Action": "kms:*",
                 "Resource": "*"}
        d = kms(ME, [other], identity=[doc(allow("kms:*", "*"))])
        assert d == Decision(False, "because no resource-based policy allows the kms:Decrypt action")

    def test_no_key_policy_no_access(self):
        d = evaluate(ME, "kms:Decrypt", KEY, identity_policies=[doc(allow("kms:*"))], key_policy=True)
        assert d == Decision(False, "because no resource-based policy allows the kms:Decrypt action")

    def test_key_policy_naming_the_principal_needs_no_identity_policy(self):
        direct = {"Effect": "Allow", "Principal": {"AWS": ROLE}, "Action": "kms:Decrypt", "Resource": "*"}
        assert kms(ME, [direct]).allowed
        d = kms(ME, [direct], action="kms:Encrypt")
        assert d.reason == "because no resource-based policy allows the kms:Encrypt action"

    def test_explicit_deny_still_wins(self):
        d = kms(ME, [ROOT_STATEMENT], identity=[doc(allow("kms:*"), deny("kms:Decrypt"))])
        assert d == Decision(False, "with an explicit deny in an identity-based policy")
        refuse = {"Effect": "Deny", "Principal": "*", "Action": "kms:Decrypt", "Resource": "*"}
        d = kms(ME, [ROOT_STATEMENT, refuse], identity=[doc(allow("kms:*"))])
        assert d == Decision(False, "with an explicit deny in a resource-based policy")

    def test_root_delegation_does_not_cover_services(self):
        d = kms(CLOUDWATCH, [ROOT_STATEMENT])
        assert d == Decision(False, "because no resource-based policy allows the kms:Decrypt action")

    def test_cross_account_key_needs_identity_too(self):
        grant = {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{OTHER}:root"}, "Action": "kms:Decrypt",
                 "Resource": "*"}
        assert not kms(STRANGER, [ROOT_STATEMENT, grant], resource_account=ACCT).allowed
        assert kms(STRANGER, [ROOT_STATEMENT, grant], identity=[doc(allow("kms:Decrypt", KEY))],
                   resource_account=ACCT).allowed


# ---------------------------------------------------------------------------- Shipyard's synthesized statements

DATA = "arn:aws:s3:::shipyard-registrydata"
ARTIFACTS = "arn:aws:s3:::shipyard-registryartifacts"
ACCESS_LOGS = "arn:aws:s3:::shipyard-registryaccesslogs"
REGISTRY = f"arn:aws:dynamodb:us-east-1:{ACCT}:table/Shipyard-RegistryTable"
AUDIT = f"arn:aws:dynamodb:us-east-1:{ACCT}:table/Shipyard-RegistryAuditTable"
DLQ = f"arn:aws:sqs:us-east-1:{ACCT}:Shipyard-EventDeadLetters"
RULE = f"arn:aws:events:us-east-1:{ACCT}:rule/Shipyard-PipelineUploadiris"
BUS = f"arn:aws:events:us-east-1:{ACCT}:event-bus/default"
PIPELINE = f"arn:aws:states:us-east-1:{ACCT}:stateMachine:Pipeline"

# PipelineTrainRoleDefaultPolicy9C5290C5 (the log and X-Ray statements left out)
TRAIN_POLICY = {"Version": "2012-10-17", "Statement": [
    {"Action": "s3:ListBucket", "Condition": {"StringLike": {"s3:prefix": ["datasets/*"]}}, "Effect": "Allow",
     "Resource": DATA},
    {"Action": ["s3:GetObject", "s3:GetObjectVersion"], "Effect": "Allow",
     "Resource": [ARTIFACTS + "/models/*", DATA + "/datasets/*"]},
    {"Action": "s3:PutObject", "Effect": "Allow", "Resource": ARTIFACTS + "/models/*"},
    {"Action": ["dynamodb:GetItem", "dynamodb:Query"], "Effect": "Allow",
     "Resource": [REGISTRY, REGISTRY + "/index/by-dataset"]},
    {"Action": "dynamodb:UpdateItem", "Condition": {
        "ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["MODEL#*"]},
        "ForAllValues:StringEquals": {"dynamodb:Attributes": [
            "pk", "sk", "dataset_ref", "version_ref", "status", "updated_at", "artifact_key", "artifact_sha256",
            "artifact_version_id", "schema", "metrics", "lineage"]}},
     "Effect": "Allow", "Resource": REGISTRY},
]}

# RegistryDataPolicy3F31CE84 (RegistryArtifactsPolicy is the same statement on the other bucket)
DATA_BUCKET_POLICY = {"Version": "2012-10-17", "Statement": [
    {"Action": "s3:*", "Condition": {"Bool": {"aws:SecureTransport": "false"}}, "Effect": "Deny",
     "Principal": {"AWS": "*"}, "Resource": [DATA, DATA + "/*"]}]}

# RegistryAccessLogsPolicyCB352E05
ACCESS_LOGS_POLICY = {"Version": "2012-10-17", "Statement": [
    {"Action": "s3:*", "Condition": {"Bool": {"aws:SecureTransport": "false"}}, "Effect": "Deny",
     "Principal": {"AWS": "*"}, "Resource": [ACCESS_LOGS, ACCESS_LOGS + "/*"]},
    {"Action": "s3:PutObject", "Condition": {"ArnLike": {"aws:SourceArn": DATA},
                                             "StringEquals": {"aws:SourceAccount": ACCT}},
     "Effect": "Allow", "Principal": {"Service": "logging.s3.amazonaws.com"}, "Resource": ACCESS_LOGS + "/data/*"},
    {"Action": "s3:PutObject", "Condition": {"ArnLike": {"aws:SourceArn": ARTIFACTS},
                                             "StringEquals": {"aws:SourceAccount": ACCT}},
     "Effect": "Allow", "Principal": {"Service": "logging.s3.amazonaws.com"},
     "Resource": ACCESS_LOGS + "/artifacts/*"},
]}

# EventDeadLettersQueuePolicy541D3192
DLQ_POLICY = {"Version": "2012-10-17", "Statement": [
    {"Action": "sqs:*", "Condition": {"Bool": {"aws:SecureTransport": "false"}}, "Effect": "Deny",
     "Principal": {"AWS": "*"}, "Resource": DLQ},
    {"Action": "sqs:SendMessage", "Condition": {"ArnEquals": {"aws:SourceArn": [
        RULE, f"arn:aws:events:us-east-1:{ACCT}:rule/Shipyard-DriftScheduleiris",
        f"arn:aws:events:us-east-1:{ACCT}:rule/Shipyard-DriftRetrainiris"]}},
     "Effect": "Allow", "Principal": {"Service": "events.amazonaws.com"}, "Resource": DLQ, "Sid": "AllowEventRules"},
]}

# AlarmTopicKey57B0D3A7's KeyPolicy
ALARM_KEY_POLICY = {"Version": "2012-10-17", "Statement": [
    {"Action": "kms:*", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCT}:root"}, "Resource": "*"},
    {"Action": ["kms:Decrypt", "kms:GenerateDataKey*"],
     "Condition": {"StringEquals": {"aws:SourceAccount": ACCT}}, "Effect": "Allow",
     "Principal": {"Service": "cloudwatch.amazonaws.com"}, "Resource": "*", "Sid": "AllowAlarmPublishers"},
]}

# AlarmTopicPolicy309DB5F8
ALARM_TOPIC_POLICY = {"Version": "2012-10-17", "Statement": [
    {"Action": "sns:Publish", "Condition": {"Bool": {"aws:SecureTransport": "false"}}, "Effect": "Deny",
     "Principal": "*", "Resource": TOPIC, "Sid": "AllowPublishThroughSSLOnly"}]}

# RegistryAuditTable86220BDE's ResourcePolicy
AUDIT_TABLE_POLICY = {"Version": "2012-10-17", "Statement": [
    {"Action": ["dynamodb:BatchWriteItem", "dynamodb:DeleteItem", "dynamodb:PartiQLDelete",
                "dynamodb:PartiQLUpdate", "dynamodb:UpdateItem"],
     "Effect": "Deny", "Principal": {"AWS": "*"}, "Resource": "*", "Sid": "AuditEventsAreAppendOnly"}]}

# PipelineRecordRoleDefaultPolicy788C3A50 (the log and X-Ray statements left out)
RECORD_POLICY = {"Version": "2012-10-17", "Statement": [
    {"Action": ["dynamodb:GetItem", "dynamodb:Query"], "Effect": "Allow",
     "Resource": [AUDIT, REGISTRY, REGISTRY + "/index/by-dataset"]},
    {"Action": ["dynamodb:ConditionCheckItem", "dynamodb:UpdateItem"], "Effect": "Allow", "Resource": REGISTRY},
    {"Action": "dynamodb:PutItem", "Effect": "Allow", "Resource": AUDIT},
    {"Action": "events:PutEvents", "Effect": "Allow", "Resource": BUS},
]}

# PipelineStateMachineRoleDefaultPolicy24D0EC77's first statement
FUNCTION = f"arn:aws:lambda:us-east-1:{ACCT}:function:Shipyard-PipelineTrain"
STATE_MACHINE_POLICY = {"Version": "2012-10-17", "Statement": [
    {"Action": "lambda:InvokeFunction", "Effect": "Allow", "Resource": [FUNCTION, FUNCTION + ":*"]}]}

# PipelineStateMachineRole61BEBDFF's AssumeRolePolicyDocument
STATES_TRUST = {"Version": "2012-10-17", "Statement": [
    {"Action": "sts:AssumeRole", "Condition": {
        "ArnLike": {"aws:SourceArn": f"arn:aws:states:us-east-1:{ACCT}:stateMachine:*"},
        "StringEquals": {"aws:SourceAccount": ACCT}},
     "Effect": "Allow", "Principal": {"Service": "states.amazonaws.com"}}]}

TLS = {"aws:SecureTransport": "true"}


class TestShipyardStatements:
    def train(self, action, resource, context=None, resource_policy=None):
        return evaluate(ME, action, resource, identity_policies=[TRAIN_POLICY], resource_policy=resource_policy,
                        context={**TLS, **(context or {})})

    def test_train_lists_datasets_only(self):
        assert self.train("s3:ListBucket", DATA, {"s3:prefix": "datasets/iris/"}).allowed
        assert not self.train("s3:ListBucket", DATA, {"s3:prefix": "evaluation/"}).allowed
        d = self.train("s3:ListBucket", DATA)   # no prefix: StringLike on an absent key does not match
        assert d == Decision(False, "because no identity-based policy allows the s3:ListBucket action")

    def test_train_reads_datasets_and_models_writes_models(self):
        assert self.train("s3:GetObject", DATA + "/datasets/iris/v1.csv").allowed
        assert self.train("s3:GetObjectVersion", ARTIFACTS + "/models/iris/1/model.onnx").allowed
        assert self.train("s3:PutObject", ARTIFACTS + "/models/iris/1/model.onnx").allowed
        assert not self.train("s3:PutObject", DATA + "/datasets/iris/v1.csv").allowed
        assert not self.train("s3:GetObject", DATA + "/evaluation/iris.csv").allowed
        assert not self.train("s3:DeleteObject", ARTIFACTS + "/models/iris/1/model.onnx").allowed

    def test_train_updates_model_items_and_named_attributes_only(self):
        ok = {"dynamodb:LeadingKeys": ["MODEL#iris"], "dynamodb:Attributes": ["status", "metrics", "updated_at"]}
        assert self.train("dynamodb:UpdateItem", REGISTRY, ok).allowed
        for wrong in ({"dynamodb:LeadingKeys": ["DATASET#iris"]}, {"dynamodb:LeadingKeys": ["MODEL#iris", "X"]},
                      {"dynamodb:Attributes": ["status", "alias"]}):
            assert not self.train("dynamodb:UpdateItem", REGISTRY, {**ok, **wrong}).allowed, wrong
        assert not self.train("dynamodb:UpdateItem", REGISTRY + "/index/by-dataset", ok).allowed
        assert self.train("dynamodb:Query", REGISTRY + "/index/by-dataset").allowed
        assert not self.train("dynamodb:PutItem", REGISTRY, ok).allowed

    def test_data_bucket_refuses_plain_http(self):
        key = DATA + "/datasets/iris/v1.csv"
        assert self.train("s3:GetObject", key, resource_policy=DATA_BUCKET_POLICY).allowed
        d = self.train("s3:GetObject", key, {"aws:SecureTransport": "false"}, resource_policy=DATA_BUCKET_POLICY)
        assert d == Decision(False, "with an explicit deny in a resource-based policy")
        # the policy grants nothing: another role is not let in by it
        other = principal_for_session(f"arn:aws:sts::{ACCT}:assumed-role/InferenceRole/s")
        assert not evaluate(other, "s3:GetObject", key, resource_policy=DATA_BUCKET_POLICY, context=TLS).allowed

    def test_access_log_delivery(self):
        logger = service_principal("logging.s3.amazonaws.com")
        ctx = {**TLS, "aws:SourceArn": DATA, "aws:SourceAccount": ACCT}
        target = ACCESS_LOGS + "/data/2026-12-06-20-00-00-ABCDEF"
        assert evaluate(logger, "s3:PutObject", target, resource_policy=ACCESS_LOGS_POLICY, context=ctx).allowed
        # the artifacts bucket's logs may not go under data/, nor come from another account or bucket
        wrong = {**ctx, "aws:SourceArn": ARTIFACTS}
        assert not evaluate(logger, "s3:PutObject", target, resource_policy=ACCESS_LOGS_POLICY, context=wrong).allowed
        wrong = {**ctx, "aws:SourceAccount": OTHER}
        assert not evaluate(logger, "s3:PutObject", target, resource_policy=ACCESS_LOGS_POLICY, context=wrong).allowed
        absent = {k: v for k, v in ctx.items() if k != "aws:SourceArn"}
        d = evaluate(logger, "s3:PutObject", target, resource_policy=ACCESS_LOGS_POLICY, context=absent)
        assert d == Decision(False, "because no resource-based policy allows the s3:PutObject action")

    def test_dead_letters_from_the_rules_only(self):
        ctx = {**TLS, "aws:SourceArn": RULE}
        assert evaluate(EVENTS, "sqs:SendMessage", DLQ, resource_policy=DLQ_POLICY, context=ctx).allowed
        other_rule = {**ctx, "aws:SourceArn": f"arn:aws:events:us-east-1:{ACCT}:rule/Somebody-Else"}
        assert not evaluate(EVENTS, "sqs:SendMessage", DLQ, resource_policy=DLQ_POLICY, context=other_rule).allowed
        assert not evaluate(EVENTS, "sqs:SendMessage", DLQ, resource_policy=DLQ_POLICY,
                            context={**ctx, "aws:SecureTransport": "false"}).allowed
        # the policy admits no role: a role's session needs its identity policy
        assert not evaluate(ME, "sqs:SendMessage", DLQ, resource_policy=DLQ_POLICY, context=TLS).allowed

    def test_alarm_key(self):
        ctx = {"aws:SourceAccount": ACCT}
        assert kms(CLOUDWATCH, ALARM_KEY_POLICY["Statement"], context=ctx, action="kms:GenerateDataKey").allowed
        assert kms(CLOUDWATCH, ALARM_KEY_POLICY["Statement"], context=ctx).allowed
        assert not kms(CLOUDWATCH, ALARM_KEY_POLICY["Statement"], context={"aws:SourceAccount": OTHER}).allowed
        assert not kms(CLOUDWATCH, ALARM_KEY_POLICY["Statement"], context=ctx, action="kms:Encrypt").allowed
        assert not kms(ME, ALARM_KEY_POLICY["Statement"]).allowed
        assert kms(ME, ALARM_KEY_POLICY["Statement"], identity=[doc(allow("kms:Decrypt", KEY))]).allowed

    def test_alarm_topic_policy_admits_no_publisher(self):
        # The synthesized topic policy only denies plain HTTP. It replaces the topic's default policy, so
        # nothing in it lets CloudWatch (a service principal) publish; a role needs its identity policy.
        ctx = {**TLS, "aws:SourceArn": f"arn:aws:cloudwatch:us-east-1:{ACCT}:alarm:Shipyard-Drift",
               "aws:SourceAccount": ACCT}
        d = evaluate(CLOUDWATCH, "sns:Publish", TOPIC, resource_policy=ALARM_TOPIC_POLICY, context=ctx)
        assert d == Decision(False, "because no resource-based policy allows the sns:Publish action")
        assert evaluate(ME, "sns:Publish", TOPIC, identity_policies=[doc(allow("sns:Publish", TOPIC))],
                        resource_policy=ALARM_TOPIC_POLICY, context=TLS).allowed

    def test_audit_table_is_append_only(self):
        record = principal_for_session(f"arn:aws:sts::{ACCT}:assumed-role/PipelineRecordRole/s")
        kw = {"identity_policies": [RECORD_POLICY], "resource_policy": AUDIT_TABLE_POLICY}
        assert evaluate(record, "dynamodb:PutItem", AUDIT, **kw).allowed
        assert evaluate(record, "dynamodb:Query", AUDIT, **kw).allowed
        d = evaluate(record, "dynamodb:UpdateItem", AUDIT, identity_policies=[doc(allow("dynamodb:*", AUDIT))],
                     resource_policy=AUDIT_TABLE_POLICY)
        assert d == Decision(False, "with an explicit deny in a resource-based policy")
        # the registry table has no resource policy: its updates are the identity policy's alone
        assert evaluate(record, "dynamodb:UpdateItem", REGISTRY, identity_policies=[RECORD_POLICY]).allowed
        assert evaluate(record, "events:PutEvents", BUS, identity_policies=[RECORD_POLICY]).allowed

    def test_state_machine_invokes_functions_and_their_versions(self):
        sm = principal_for_session(f"arn:aws:sts::{ACCT}:assumed-role/PipelineStateMachineRole/x")
        assert allowed("lambda:InvokeFunction", FUNCTION, STATE_MACHINE_POLICY, principal=sm)
        assert allowed("lambda:InvokeFunction", FUNCTION + ":3", STATE_MACHINE_POLICY, principal=sm)
        assert not allowed("lambda:InvokeFunction", FUNCTION + "Other", STATE_MACHINE_POLICY, principal=sm)

    def test_state_machine_trust_policy(self):
        states = service_principal("states.amazonaws.com")
        ctx = {"aws:SourceArn": PIPELINE, "aws:SourceAccount": ACCT}
        assert evaluate(states, "sts:AssumeRole", ROLE, resource_policy=STATES_TRUST, context=ctx).allowed
        assert not evaluate(states, "sts:AssumeRole", ROLE, resource_policy=STATES_TRUST,
                            context={**ctx, "aws:SourceArn": f"arn:aws:states:us-east-1:{OTHER}:stateMachine:P"}
                            ).allowed
        assert not evaluate(EVENTS, "sts:AssumeRole", ROLE, resource_policy=STATES_TRUST, context=ctx).allowed


def test_a_policy_text_is_parsed_once_not_at_every_request(monkeypatch):
    """Every enforced request evaluates the caller's policies, which moto keeps as JSON text: the
    same text is parsed (and checked) once."""
    from localcloud import policy

    parsed = []
    real = policy._document
    monkeypatch.setattr(policy, "_document", lambda p: parsed.append(p) or real(p))
    text = json.dumps(doc(allow("s3:GetObject", OBJECT), allow("s3:PutObject", OBJECT + "-parsed-once")))
    for _ in range(3):
        assert allowed("s3:GetObject", OBJECT, text)
        assert not allowed("s3:DeleteObject", OBJECT, text)
    assert parsed.count(text) == 1
    assert not allowed("s3:GetObject", OBJECT, text.replace("GetObject", "GetObjectAcl"))  # another text
