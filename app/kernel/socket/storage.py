"""SQLite persistence of socket aliases (the socket itself knows nothing of tables)."""

from __future__ import annotations

import time

from app.kernel.socket.manager import AliasConfig, SocketStorage
from app.kernel.socket.router import RoutingStrategy
from app.kernel.store.socket_tables import SocketRow


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


def socket_storage() -> SocketStorage:
    return SocketStorage(load=_load, save=_save, delete=_delete)
