"""What every page shares, by seam:

- state.py: the one per-user object (Session), its view (view.py: what a link carries), widgets bound to it;
- models.py: caches shared by all sessions, model lookup, the ModelHandle pages work through;
- sidebar.py: `frame(page)`, which every page calls first: the link, the model picker, notices;
- figures.py: image grids and the latent map figure;
- navigation.py: the list of pages; live_pad/: the in-browser decoder component.
"""
import gc

import torch

# Decoding a small VAE takes far below a millisecond; extra threads only contend when a classroom
# of sessions decode at once, so each decode runs on one thread.
torch.set_num_threads(1)
# The modules imported so far live as long as the server: move their objects out of the garbage
# collector's view, so its full collections scan only what the sessions allocate.
gc.freeze()

from .figures import map_figure, show_images  # noqa: E402
from .models import ModelHandle, file_checkpoint, other_checkpoints, shared_dataset  # noqa: E402
from .sidebar import frame  # noqa: E402
from .state import form_widget, in_fragment_rerun, notice, session, slider_widget, store, sync_url, view, widget  # noqa: E402

__all__ = ["ModelHandle", "file_checkpoint", "other_checkpoints", "form_widget", "frame", "in_fragment_rerun", "map_figure",
           "notice", "session", "shared_dataset", "show_images", "slider_widget", "store", "sync_url", "view", "widget"]
