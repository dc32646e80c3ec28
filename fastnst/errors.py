"""The one exception type a user can cause; ``fastnst.cli`` turns it into a line on stderr."""


class FastNSTError(Exception):
    """A problem the user can fix (missing file, bad video, wrong weights), stated in one sentence."""
