"""Errors the engine raises for bad input; each names the thing at fault."""


class EngineError(Exception):
    """Base class for errors caused by input the user can fix."""


class PromptTooLongError(EngineError):
    """A prompt has more tokens than the text encoder accepts."""


class WeightsFormatError(EngineError):
    """A weights file is not safetensors, or does not fit the model."""


class DatasetError(EngineError):
    """A dataset is empty, missing, or unreadable."""


class DemoSourceError(EngineError):
    """A package file the demo needs is missing or cannot be decoded."""
