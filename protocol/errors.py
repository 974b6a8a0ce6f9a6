"""The one error type of the wire: every bad frame or message raises it."""


class ProtocolError(Exception):
    """A frame or message that does not follow the protocol.

    Receivers catch this one type and treat the peer as broken; they never
    crash or hang on what the peer sent.
    """
