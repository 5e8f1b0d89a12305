"""The Open Inference Protocol (KServe V2): its types, its decoder and its encoder.

:func:`~modelserve.protocol.v2.decode.decode` reads a request (JSON, or a JSON header and binary
tensors) into a :class:`~modelserve.core.batch.Batch` and the outputs to answer with;
:func:`~modelserve.protocol.v2.encode.encode` writes a prediction as V2 output tensors.
"""
