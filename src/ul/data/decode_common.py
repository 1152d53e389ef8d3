"""What the two decoder back ends share: the error that tells `decode` where a batch failed."""


class BackendError(RuntimeError):
    """Decoding failed at or after file `first` of the list (DALI only knows the batch)."""

    def __init__(self, first: int, message: str):
        super().__init__(message)
        self.first = first
