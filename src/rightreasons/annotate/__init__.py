"""The annotation page: draw, erase and review masks (white = 1 = ignore) of an image folder in a local
web page, ``rightreasons annotate DATA``. :mod:`.store` reads and writes masks and labels.csv (atomic
saves, history, versions), :mod:`.server` serves the page, :mod:`.insight` adds a run's predictions and
saliency, :mod:`.proposals` the masks ``rightreasons propose-masks`` proposed."""

from .server import AnnotateApp, AnnotateServer, folder_path, serve
from .store import ConflictError, MaskStore, NotFoundError

__all__ = ["AnnotateApp", "AnnotateServer", "ConflictError", "MaskStore", "NotFoundError", "folder_path", "serve"]
