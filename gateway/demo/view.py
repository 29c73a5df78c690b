"""The demo's live view: readings flowing device -> store -> broker, as a rich table on a
terminal and as a plain line every few seconds elsewhere (CI logs)."""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING, Final

from rich.console import Console
from rich.live import Live
from rich.table import Table

if TYPE_CHECKING:
    from gateway.demo import Outage
    from gateway.demo.observer import Observer
    from gateway.demo.scenario import Scenario
    from gateway.service import Service

PLAIN_EVERY_S: Final = 5.0


class View:
    def __init__(
        self,
        scenario: Scenario,
        service: Service,
        observer: Observer,
        outage: Outage,
        *,
        interactive: bool,
    ) -> None:
        self.scenario = scenario
        self.service = service
        self.observer = observer
        self.outage = outage
        self.interactive = interactive
        self.console = Console()
        self._live: Live | None = None
        self._last_plain = -PLAIN_EVERY_S
        self._queue = 0

    def __enter__(self) -> View:
        if self.interactive:
            self._live = Live(console=self.console, refresh_per_second=4, transient=False)
            self._live.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._live is not None:
            self._live.__exit__(exc_type, exc, tb)

    async def refresh(self, elapsed: float) -> None:
        store = self.service.store
        if store is not None:
            try:
                self._queue = (await store.stats()).queue_depth
            except Exception:  # the store closing at the end of the demo
                self._queue = self._queue
        uplink = self.service.uplink
        connected = bool(uplink is not None and uplink.state.connected)
        if self._live is not None:
            self._live.update(self._table(elapsed, connected))
        elif elapsed - self._last_plain >= PLAIN_EVERY_S:
            self._last_plain = elapsed
            print(
                f"demo: {elapsed:5.1f}s produced {self.scenario.produced()} "
                f"committed {self.service.committed} waiting {self._queue} "
                f"delivered {self.observer.delivered()} broker {self.outage.state} "
                f"uplink {'connected' if connected else 'reconnecting'}",
                flush=True,
            )

    def _table(self, elapsed: float, connected: bool) -> Table:
        table = Table(title=f"Carebox demo - {elapsed:4.1f} s", expand=False)
        for column in ("device", "kind", "paired", "produced"):
            table.add_column(column)
        for p in self.scenario.producers.values():
            table.add_row(
                p.name, p.kind, "yes" if p.paired else "NO (stranger)", f"{p.taken}/{p.total}"
            )
        table.add_section()
        table.add_row("store", "committed", "", str(self.service.committed))
        table.add_row("store", "waiting (encrypted)", "", str(self._queue))
        table.add_row("uplink", "connected" if connected else "reconnecting", "", "")
        table.add_row("broker", self.outage.state, "", "")
        table.add_row("broker", "delivered (counted there)", "", str(self.observer.delivered()))
        return table
