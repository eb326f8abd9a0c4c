"""A Lambda context object as the Python runtime passes it, for calling handlers directly.

Its own module, importing nothing: ``bench/cold.py`` uses it in a fresh process whose import time
is the measurement (``tests.models`` loads scikit-learn).
"""


class LambdaContext:
    function_name = "shipyard-inference"
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:shipyard-inference"
    memory_limit_in_mb = 1024
    aws_request_id = "00000000-0000-0000-0000-000000000000"
    log_group_name = "/aws/lambda/shipyard-inference"
    log_stream_name = "stream"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 30_000
