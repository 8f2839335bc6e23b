"""The one exception type users see.

Every check of user input (files, config, arguments) raises `PipelineError` with a single line that names the
offending file or key and says what is wrong. The CLI prints that line and exits with status 1, so a broken WAV
or a typo never surfaces as a traceback from deep inside torch.
"""


class PipelineError(Exception):
    """A problem with the user's input or environment, reported as one line."""
