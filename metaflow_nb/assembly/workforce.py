"""The plugin instances of one BuildSpecs, by role."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from ..config.buildspecs import BuildSpecs
from ..workers.contracts import Worker
from ..workers.features import TIMEFRAME_KEY
from ..workers.registry import get_plugin


@dataclass
class Workforce:
    """The plugin instances of one BuildSpecs, by role, in workforce order.

    >>> import metaflow_nb as mf
    >>> wf = Workforce.from_specs(mf.build_specs("config/runs/sma_cross.yaml", data="sp500_daily"))
    >>> [w.instance_id for w in wf.opportunity], wf.size.name
    (['sma_1'], 'all_in_sizer')
    """

    context: list[Worker]
    opportunity: list[Worker]
    threat: list[Worker]
    entry: Worker
    exits: list[Worker]
    size: Worker
    #: higher timeframe (``"4h@utc"``) per context instance id that runs on one
    timeframes: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_specs(cls, specs: BuildSpecs) -> "Workforce":
        """Instances built from the specs' already validated params models.

        >>> import metaflow_nb as mf
        >>> wf = Workforce.from_specs(mf.build_specs("config/runs/sma_cross.yaml", data="sp500_daily"))
        >>> wf.opportunity[0]
        SmaCross('sma_1', SmaCrossParams(fast=10, slow=20))
        """
        made: dict[str, list[Worker]] = {}
        timeframes: dict[str, str] = {}
        for e in specs.entries():
            made.setdefault(e.section, []).append(get_plugin(e.plugin)(e.instance_id, e.model))
            if e.timeframe:
                timeframes[e.instance_id] = e.timeframe
        return cls(
            context=made.get("context_workers", []),
            opportunity=made.get("opportunity_workers", []),
            threat=made.get("threat_workers", []),
            entry=made["entry_planning"][0],
            exits=made.get("exit_planning", []),
            size=made["size_planning"][0],
            timeframes=timeframes,
        )

    def all(self) -> list[Worker]:
        """Every instance, in workforce order.

        >>> import metaflow_nb as mf
        >>> wf = Workforce.from_specs(mf.build_specs("config/runs/sma_cross.yaml", data="sp500_daily"))
        >>> [w.instance_id for w in wf.all()]
        ['sma_1', 'entry_1', 'exit_1', 'size_1']
        """
        return [*self.context, *self.opportunity, *self.threat, self.entry, *self.exits, self.size]

    def replace(self, new: Mapping[str, Worker]) -> "Workforce":
        """The same workforce with some instances (by instance id) replaced.

        >>> import metaflow_nb as mf
        >>> wf = Workforce.from_specs(mf.build_specs("config/runs/sma_cross.yaml", data="sp500_daily"))
        >>> sizer = get_plugin("all_in_sizer")
        >>> wf.replace({"size_1": sizer("size_1", sizer.Params(whole_units=False))}).size.params.whole_units
        False
        """
        def sub(ws: list[Worker]) -> list[Worker]:
            return [new.get(w.instance_id, w) for w in ws]
        return Workforce(context=sub(self.context), opportunity=sub(self.opportunity), threat=sub(self.threat),
                         entry=new.get(self.entry.instance_id, self.entry), exits=sub(self.exits),
                         size=new.get(self.size.instance_id, self.size), timeframes=self.timeframes)

    def context_params(self) -> dict[str, dict[str, Any]]:
        """The first configured instance of each context plugin sets what ``ctx.context`` returns
        (on its higher timeframe, when it has one: :meth:`feature_params`).

        >>> import metaflow_nb as mf
        >>> wf = Workforce.from_specs(mf.build_specs("config/runs/ict_smc_strategy.yaml", data="eurusd_15m"))
        >>> wf.context_params()["atr"]
        {'period': 14}
        """
        out: dict[str, dict[str, Any]] = {}
        for w in self.context:
            if w.name not in out:
                out[w.name] = self.feature_params(w)
        return out

    def feature_params(self, w: Worker) -> dict[str, Any]:
        """The params :meth:`FeatureContext.feature` computes context instance ``w`` with:
        its params, plus ``"@timeframe"`` when it runs on a higher timeframe.

        >>> import metaflow_nb as mf
        >>> wf = Workforce.from_specs(mf.build_specs("config/runs/ict_smc_strategy.yaml", data="eurusd_15m"))
        >>> atr = wf.context[1]
        >>> wf.feature_params(atr), Workforce(**{**vars(wf), "timeframes": {"atr_1": "4h@fx"}}).feature_params(atr)
        ({'period': 14}, {'period': 14, '@timeframe': '4h@fx'})
        """
        params = w.params.model_dump(mode="json")
        tf = self.timeframes.get(w.instance_id) if self.timeframes else None
        if tf:
            params[TIMEFRAME_KEY] = tf
        return params
