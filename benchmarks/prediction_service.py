"""TF Serving's PredictionService over a loaded QA export, on its gRPC and REST protocols.

TF Serving's binary (tensorflow_model_server) is not installed here, so the serving
tests and benchmarks stand this in for it: a real gRPC PredictionService
(tensorflow-serving-api's protos and servicer base) and an http.server implementing the
REST API's columnar `POST /v1/models/<name>:predict`, both calling the export's
signatures as TF Serving does and refusing what it refuses, with its status codes:

    service = PredictionService(tf.saved_model.load(export_dir), model_name="realm_qa")
    with grpc_server(service) as address:   # "127.0.0.1:PORT"
        client.predict_grpc(address, ["who?"])
"""

import contextlib
import http.server
import json
import re
import threading
from concurrent import futures
from typing import Any, Dict, Iterator, Mapping

import numpy as np

DEFAULT_MODEL_NAME = "realm_qa"


class RequestError(Exception):
    """A request TF Serving refuses; `status` is "not_found", "precondition" or "invalid"."""

    def __init__(self, status: str, message: str):
        super().__init__(message)
        self.status = status


class PredictionService:
    """Runs Predict requests against one loaded SavedModel, served under `model_name`.

    Args:
      loaded: the export, `tf.saved_model.load`ed (TF Text's ops, and ScaNN's for a
        ScaNN export, registered before).
      model_name: the name requests must give (a base path's name in models.config).
    """

    def __init__(self, loaded: Any, model_name: str = DEFAULT_MODEL_NAME):
        self.loaded = loaded
        self.model_name = model_name

    def predict(self, model_name: str, signature_name: str, inputs: Mapping[str, Any]) -> Dict[str, np.ndarray]:
        """The signature's outputs, name -> np.ndarray, as TF Serving computes them.

        Args:
          model_name, signature_name: the request's model_spec ("" means serving_default).
          inputs: input name -> array-like (np.ndarray from gRPC, JSON values from REST).

        Raises:
          RequestError: an unknown model or signature, inputs that are not the signature's,
            or a request the signature refuses (its InvalidArgumentError's message).
        """
        import tensorflow as tf

        if model_name != self.model_name:
            raise RequestError("not_found", f"Servable not found for request: Latest({model_name})")
        signature_name = signature_name or "serving_default"
        if signature_name not in self.loaded.signatures:
            raise RequestError("precondition", f'Serving signature key "{signature_name}" not found.')
        function = self.loaded.signatures[signature_name]
        specs = function.structured_input_signature[1]
        if set(inputs) != set(specs):
            raise RequestError("invalid", f"inputs {sorted(inputs)} do not match the signature's {sorted(specs)}")
        try:
            outputs = function(**{name: tf.constant(value, specs[name].dtype) for name, value in inputs.items()})
        except (tf.errors.InvalidArgumentError, ValueError, TypeError) as e:
            # ValueError/TypeError: a value that is not of the input's dtype or shape, which TF
            # Serving refuses while parsing the request.
            raise RequestError("invalid", getattr(e, "message", str(e))) from None
        return {name: value.numpy() for name, value in outputs.items()}


def jsonable(value: Any) -> Any:
    """Nested lists of a np.ndarray's `tolist()`, strings decoded: TF Serving's JSON."""
    if isinstance(value, list):
        return [jsonable(v) for v in value]
    return value.decode("utf-8") if isinstance(value, bytes) else value


@contextlib.contextmanager
def grpc_server(service: PredictionService, max_workers: int = 2) -> Iterator[str]:
    """A gRPC PredictionService on 127.0.0.1 answering with `service`, `max_workers` requests
    at a time; yields "HOST:PORT" and stops the server on exit."""
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    codes = {"not_found": grpc.StatusCode.NOT_FOUND, "precondition": grpc.StatusCode.FAILED_PRECONDITION,
             "invalid": grpc.StatusCode.INVALID_ARGUMENT}

    class Servicer(prediction_service_pb2_grpc.PredictionServiceServicer):
        def Predict(self, request, context):  # noqa: N802  (the proto's method name)
            try:
                outputs = service.predict(request.model_spec.name, request.model_spec.signature_name,
                                          {name: tf.make_ndarray(tensor) for name, tensor in request.inputs.items()})
            except RequestError as e:
                context.abort(codes[e.status], str(e))
            response = predict_pb2.PredictResponse()
            response.model_spec.CopyFrom(request.model_spec)
            for name, value in outputs.items():
                response.outputs[name].CopyFrom(tf.make_tensor_proto(value))
            return response

    # TF Serving takes messages of any size; gRPC's default caps them at 4 MB.
    unlimited = [("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers), options=unlimited)
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(Servicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(grace=None)


@contextlib.contextmanager
def rest_server(service: PredictionService) -> Iterator[str]:
    """TF Serving's REST `POST /v1/models/<name>:predict` (columnar inputs and outputs) on
    127.0.0.1, in a thread; yields "HOST:PORT" and shuts the server down on exit."""
    statuses = {"not_found": 404, "precondition": 400, "invalid": 400}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802  (http.server's method name)
            match = re.fullmatch(r"/v1/models/([^/:]+):predict", self.path)
            try:
                if not match:
                    raise RequestError("not_found", f"Malformed request: POST {self.path}")
                try:
                    request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                except ValueError as e:
                    raise RequestError("invalid", f"JSON Parse error: {e}") from None
                if not isinstance(request, dict) or "inputs" not in request:
                    raise RequestError("invalid", "only the columnar format (\"inputs\") is served here")
                outputs = service.predict(match.group(1), request.get("signature_name", ""), request["inputs"])
                status, body = 200, {"outputs": {name: jsonable(value.tolist()) for name, value in outputs.items()}}
            except RequestError as e:
                status, body = statuses[e.status], {"error": str(e)}
            data = json.dumps(body).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass  # Requests are not worth a line each on stderr.

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        thread.join()
        server.server_close()
