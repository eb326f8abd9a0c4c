"""One Lambda execution environment: imports the handler from the asset directory and serves invocations.

Run as a script (never imported by the asset): `python _worker.py ASSET_DIR HANDLER REQ_FD RESP_FD`.
Requests and responses are frames on two private pipes, so whatever the function prints on
stdout/stderr is its log, as in Lambda. A frame is a JSON header line whose ``size`` says how many
bytes of JSON follow it (the event, the function's result), so a large payload crosses the pipe as
the bytes it is, never escaped into a string. After each invocation an `END RequestId: <id>` line
marks the end of that invocation's log.
"""
import json
import os
import sys
import time
import traceback


class LambdaContext:
    def __init__(self, request_id: str, deadline: float, env: dict):
        self.aws_request_id = request_id
        self.function_name = env.get("AWS_LAMBDA_FUNCTION_NAME", "")
        self.function_version = env.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        self.invoked_function_arn = env.get("LOCALCLOUD_FUNCTION_ARN", "")
        self.memory_limit_in_mb = int(env.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"))
        self.log_group_name = env.get("AWS_LAMBDA_LOG_GROUP_NAME", "")
        self.log_stream_name = env.get("AWS_LAMBDA_LOG_STREAM_NAME", "")
        self.identity = None
        self.client_context = None
        self._deadline = deadline

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.time()) * 1000))


def _error(exc: BaseException) -> dict:
    tb = traceback.extract_tb(exc.__traceback__)
    return {
        "errorMessage": str(exc),
        "errorType": type(exc).__name__,
        "requestId": "",
        "stackTrace": [f'  File "{f.filename}", line {f.lineno}, in {f.name}\n    {f.line}\n' for f in tb],
    }


def main() -> None:
    asset_dir, handler_spec, req_fd, resp_fd = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    # Like /var/task: the asset's root is first on the path and the working directory.
    sys.path[0] = asset_dir
    os.chdir(asset_dir)
    requests = os.fdopen(req_fd, "rb")
    responses = os.fdopen(resp_fd, "wb")

    def send(header: dict, body: bytes = b"") -> None:
        header["size"] = len(body)
        responses.write(json.dumps(header).encode() + b"\n")
        if body:
            responses.write(body)
        responses.flush()

    handler = init_error = None
    try:
        module_name, _, func_name = handler_spec.rpartition(".")
        if not module_name:
            raise ValueError(f"Bad handler '{handler_spec}': not enough values to unpack (expected 2, got 1)")
        import importlib

        try:
            module = importlib.import_module(module_name.replace("/", "."))
        except ModuleNotFoundError as err:
            raise _ImportModuleError(f"Unable to import module '{module_name}': {err}") from err
        handler = getattr(module, func_name, None)
        if handler is None:
            raise _HandlerNotFound(f"Handler '{func_name}' missing on module '{module_name}'")
    except BaseException as exc:  # noqa: BLE001 - reported as Runtime.* errors, like Lambda
        traceback.print_exc()
        init_error = _error(exc)
        if isinstance(exc, (_ImportModuleError, _HandlerNotFound)):
            init_error["errorType"] = "Runtime." + type(exc).__name__.lstrip("_")
    sys.stdout.flush()
    sys.stderr.flush()
    send({"ready": True})

    for line in requests:
        req = json.loads(line)
        rid = req["request_id"]
        body = requests.read(req["size"])
        try:  # the event: the Invoke request's body is decoded here, not in the local cloud
            event = json.loads(body.decode("utf-8"))
        except (ValueError, RecursionError) as err:
            # not JSON: moto refuses such a body before anything runs; the runtime raises this error
            send({"request_id": rid, "bad_event": {"type": type(err).__name__, "text": str(err),
                                                   "msg": getattr(err, "msg", ""), "pos": getattr(err, "pos", 0)}})
            continue
        print(f"START RequestId: {rid} Version: $LATEST", flush=True)
        started = time.time()
        if init_error is not None:
            result = {"error": init_error}
        else:
            ctx = LambdaContext(rid, started + float(req.get("timeout", 3)), os.environ)
            try:
                out = handler(event, ctx)
                try:
                    payload = json.dumps(out).encode()
                    result = {}
                except (TypeError, ValueError) as exc:
                    result = {"error": {"errorMessage": f"Unable to marshal response: {exc}",
                                        "errorType": "Runtime.MarshalError", "requestId": rid, "stackTrace": []}}
            except BaseException as exc:  # noqa: BLE001
                err = _error(exc)
                err["requestId"] = rid
                print(f"[ERROR] {err['errorType']}: {err['errorMessage']}", file=sys.stderr)
                traceback.print_exc()
                result = {"error": err}
                if isinstance(exc, (SystemExit, KeyboardInterrupt)):
                    result["fatal"] = True
        sys.stdout.flush()
        sys.stderr.flush()
        print(f"END RequestId: {rid}", flush=True)
        result["request_id"] = rid
        result["duration_ms"] = round((time.time() - started) * 1000, 2)
        # the largest peak of a child process this sandbox ran and waited for (kB, Linux): Lambda
        # counts the function's subprocesses in its memory too; the runtime compares it
        result["children_peak_kb"] = _children_peak_kb()
        send(result, b"" if "error" in result else payload)
        if result.get("fatal"):
            break


def _children_peak_kb() -> int:
    try:
        import resource

        return int(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    except (ImportError, OSError, ValueError):
        return 0


class _ImportModuleError(Exception):
    pass


class _HandlerNotFound(Exception):
    pass


if __name__ == "__main__":
    main()
