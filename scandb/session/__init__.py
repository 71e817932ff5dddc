"""experanto sessions (EXPERANTO_FORMAT.md): reading a session folder or tar, and sampling
its modalities at any times by experanto's rules.

``files`` the safe folder/tar access, ``parse`` small files and mapped arrays, ``modalities``
one modality folder each, ``session`` the session and its key, ``config`` experanto's default
modality config, ``sampling`` the interpolation, ``normalize`` ChunkDataset's normalisation.
"""

from .modalities import Modality, Screen, Sequence, Spikes, StimulusTrial, TimeIntervals
from .session import Session, open_session, session_key

__all__ = ["Modality", "Screen", "Sequence", "Session", "Spikes", "StimulusTrial", "TimeIntervals",
           "open_session", "session_key"]
