"""A loop's model snapshots: list, download, import, and starting a new lineage.

The trainer publishes snapshots; an import adds one beside them (``source`` "import") in the
current lineage, so the api serves it and the trainer continues learning from it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.exc import IntegrityError

from bandits.errors import bad_request, conflict, not_found, unprocessable
from bandits.learning.vw import VwArgsError, check_model
from bandits.loop_config import LoopConfig
from bandits.services.loops import loop_or_404
from bandits.store import loops as loop_store
from bandits.store import training
from bandits.store.db import Database, iso, utcnow
from bandits.store.models import Model

# Versions are Postgres integers: a larger number names no snapshot and must not reach a query.
MAX_VERSION = 2**31 - 1


def model_json(model: Any, size_bytes: int) -> dict[str, Any]:
    """A snapshot's metadata (a :class:`Model` or a row of :func:`training.list_models`)."""
    return {
        "version": model.version, "lineage": model.lineage, "config_version": model.config_version,
        "events_learned": model.events_learned, "total_learned": model.total_learned,
        "source": model.source, "created_at": iso(model.created_at), "size_bytes": size_bytes,
        "apprentice_agreement": model.apprentice_agreement,
    }


class ModelService:
    def __init__(self, db: Database) -> None:
        self._db = db

    def list(self, name: str, limit: int) -> dict[str, Any]:
        """The snapshots, newest first, and the version the api serves now."""
        with self._db.session() as session:
            loop = loop_or_404(name, session)
            lineage, current = training.served_version(loop.id, session=session)
            rows = training.list_models(loop.id, limit, session=session)
        return {
            "current": current, "lineage": lineage,
            "models": [model_json(row, row.size_bytes) for row in rows],
        }

    def download(self, name: str, version: int) -> bytes:
        """The VW model file of one snapshot."""
        with self._db.session() as session:
            loop = loop_or_404(name, session)
            blob = None
            if 1 <= version <= MAX_VERSION:
                blob = training.model_blob(loop.id, version, session=session)
        if blob is None:
            detail = " (version 0 is the empty model, never stored)" if version == 0 else ""
            raise not_found(
                "ModelNotFound", f"loop {name!r} has no model version {version}{detail}", "version"
            )
        return blob

    def import_model(self, name: str, blob: bytes) -> dict[str, Any]:
        """Store ``blob`` as the newest snapshot of the current lineage once VW has loaded it
        with the loop's arguments (422 ``InvalidModel`` quoting VW otherwise)."""
        if not blob:
            raise bad_request("EmptyModel", "the body is empty; send the VW model file")
        with self._db.session() as session:
            loop = loop_or_404(name, session)
            config = LoopConfig.model_validate(loop.config)
            loop_id, lineage = loop.id, training.current_lineage(loop.id, session=session)
        # Checked outside any transaction: loading a large model takes a while.
        try:
            check_model(config, blob)
        except VwArgsError as exc:
            raise unprocessable(
                "InvalidModel", f"VW cannot load the body as this loop's model: {exc}"
            ) from None
        try:
            with self._db.session() as session:
                loop = loop_store.lock_loop(loop_id, session=session)
                # A config change that alters VW's arguments always starts a lineage; others
                # (weights, the apprentice switch) leave the checked model valid.
                if training.current_lineage(loop_id, session=session) != lineage:
                    raise conflict(
                        "ModelConflict",
                        "the loop's model was reset while the file was checked; send it again",
                    )
                newest = training.latest_version(loop_id, session=session)
                model = Model(
                    loop_id=loop_id, version=(newest[0] if newest else 0) + 1, lineage=lineage,
                    config_version=loop.config_version, blob=blob, events_learned=0,
                    total_learned=training.lineage_total_learned(loop_id, lineage, session=session),
                    source="import", created_at=utcnow(),
                )
                session.add(model)
                session.flush()
                return model_json(model, len(blob))
        except IntegrityError:
            # The trainer published the same version number in between (it takes no loop lock).
            raise conflict(
                "ModelConflict",
                "another snapshot was published at the same moment; send the model again",
            ) from None

    def reset(self, name: str) -> dict[str, Any]:
        """Start a new lineage from the empty model: a new config version, same config."""
        with self._db.session() as session:
            loop = loop_store.lock_loop(loop_or_404(name, session).id, session=session)
            loop = loop_store.update_loop_config(loop, dict(loop.config), True, session=session)
            session.flush()
            return {
                "lineage": training.current_lineage(loop.id, session=session),
                "config_version": loop.config_version, "current": 0,
            }
