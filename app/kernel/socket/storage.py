"""SQLite persistence of socket aliases and the swap log (the socket itself knows nothing of tables)."""

from __future__ import annotations

import time
from typing import Any

from peewee import fn

from app.kernel.socket.manager import SWAP_LOG_FIELDS, AliasConfig, SocketStorage
from app.kernel.socket.router import RoutingStrategy
from app.kernel.store.socket_tables import SocketRow, SocketSwapRow


def _load() -> list[AliasConfig]:
    configs = []
    for row in SocketRow.select():
        try:
            routing = RoutingStrategy(row.routing)
        except ValueError:
            routing = RoutingStrategy.ROUND_ROBIN
        configs.append(AliasConfig(row.alias, row.model, tuple(row.pool or ()), tuple(row.fallbacks or ()), routing))
    return configs


def _save(config: AliasConfig) -> None:
    SocketRow.insert(alias=config.alias, model=config.model, pool=list(config.pool),
                     fallbacks=list(config.fallbacks), routing=config.routing.value,
                     updated_at=time.time()).on_conflict_replace().execute()


def _delete(alias: str) -> None:
    SocketRow.delete().where(SocketRow.alias == alias).execute()


def _log(entry: dict[str, Any]) -> int:
    return int(SocketSwapRow.insert(**{k: entry.get(k) for k in SWAP_LOG_FIELDS}).execute())


def _history(limit: int, alias: str | None) -> list[dict[str, Any]]:
    query = SocketSwapRow.select().order_by(SocketSwapRow.id.desc()).limit(max(1, min(limit, 1000)))
    if alias is not None:
        query = query.where(SocketSwapRow.alias == alias)
    return list(query.dicts())


def _latest() -> list[dict[str, Any]]:
    last = SocketSwapRow.select(fn.MAX(SocketSwapRow.id)).group_by(SocketSwapRow.alias)
    return list(SocketSwapRow.select().where(SocketSwapRow.id.in_(last)).dicts())


def _update_fallbacks(row: int, fallbacks: list[str]) -> None:
    SocketSwapRow.update(chosen_fallbacks=fallbacks).where(SocketSwapRow.id == row).execute()


def socket_storage() -> SocketStorage:
    return SocketStorage(load=_load, save=_save, delete=_delete, log=_log, history=_history, latest=_latest,
                         update_fallbacks=_update_fallbacks)
