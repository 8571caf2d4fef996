"""GPU schedules: dlight's rules, tried in order, where a rule that raises counts as "not applicable"."""

from __future__ import annotations

import tvm
from tvm.s_tir import dlight as dl


class Lenient(dl.ScheduleRule):
    """Wrap a dlight rule so an internal assertion (e.g. GEMV on an extent-1 reduction) declines."""

    def __init__(self, rule: dl.ScheduleRule):
        self.rule = rule

    def apply(self, func, target, tunable):
        try:
            return self.rule.apply(func, target, tunable)
        except Exception:  # noqa: BLE001 - dlight signals "cannot schedule" by raising
            return None


def gpu_rules() -> list[dl.ScheduleRule]:
    rules = [dl.gpu.Matmul(), dl.gpu.GEMV(), dl.gpu.LowBatchGEMV(), dl.gpu.Reduction(),
             dl.gpu.GeneralReduction(), dl.gpu.Fallback()]
    return [Lenient(rule) for rule in rules]


def apply_gpu_schedules() -> tvm.transform.Pass:
    return dl.ApplyDefaultSchedule(*gpu_rules())
