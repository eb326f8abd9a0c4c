"""A LocalCloud that has stopped leaves the process as it found it: environment, moto config, moto's classes."""
import os
import warnings

import pytest

from infra.local import LocalCloud, Template

TINY = {"Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
        "Outputs": {"TopicArn": {"Value": {"Ref": "Topic"}}}}


def _cloud():
    return LocalCloud(Template.from_dict(TINY, stack_name="Lifecycle"), aws_port=0, api_port=0, clock=False,
                      log=lambda _: None)


@pytest.mark.parametrize("moto_port, sfn_config", [
    (None, None),                                    # nothing set before
    ("4999", {"execute_state_machine": False, "other": 1}),  # someone else's settings
])
def test_stop_restores_moto_port_and_step_functions_config(monkeypatch, moto_port, sfn_config):
    from moto.awslambda.models import LambdaFunction
    from moto.core.config import default_user_config

    if moto_port is None:
        monkeypatch.delenv("MOTO_PORT", raising=False)
    else:
        monkeypatch.setenv("MOTO_PORT", moto_port)
    if sfn_config is None:
        monkeypatch.delitem(default_user_config, "stepfunctions", raising=False)
    else:
        monkeypatch.setitem(default_user_config, "stepfunctions", dict(sfn_config))
    invoke_lambda, invoke = LambdaFunction._invoke_lambda, LambdaFunction.invoke

    with _cloud() as cloud:
        assert os.environ["MOTO_PORT"] == str(cloud.aws_port)
        assert default_user_config["stepfunctions"]["execute_state_machine"] is True
        assert LambdaFunction._invoke_lambda is not invoke_lambda

    assert os.environ.get("MOTO_PORT") == moto_port
    assert default_user_config.get("stepfunctions") == sfn_config
    assert LambdaFunction._invoke_lambda is invoke_lambda and LambdaFunction.invoke is invoke


def test_starting_again_leaves_the_warning_filters_alone():
    with _cloud():
        pass
    warnings.filterwarnings("ignore", message="added after the first start")
    mine = warnings.filters[0]
    with _cloud():
        pass
    assert warnings.filters[0] is mine  # the local cloud's filter was not added (moved to the front) again
