"""splip: SpLIP (ECCV 2024) reproduced on open_clip. See the README for the modules."""

# First, so that tqdm.auto is first imported under splip.progress's warning filter: open_clip imports
# huggingface_hub, which imports tqdm.auto too, and its warning would print an absolute path.
from splip import progress as _progress  # noqa: F401
