"""FDB v1.0's published figures, shown beside ours (the FDB paper's table, as issue 10 gives
them). FDB read 24 kHz outputs as 16 kHz for backchannel: these figures carry that."""

from __future__ import annotations

Figures = dict[str, dict[str, float]]

PUBLISHED: dict[str, Figures] = {
    "personaplex": {
        "synthetic_pause_handling": {"tor": 0.584},
        "candor_pause_handling": {"tor": 0.662},
        "icc_backchannel": {"tor": 0.327, "freq": 0.025, "jsd": 0.649},
        "candor_turn_taking": {"tor": 0.992, "latency": 0.070},
        "synthetic_user_interruption": {"tor": 1.000, "judge": 4.210, "latency": 0.400},
    },
    "moshi": {
        "synthetic_pause_handling": {"tor": 0.985},
        "candor_pause_handling": {"tor": 0.980},
        "icc_backchannel": {"tor": 1.000, "freq": 0.001, "jsd": 0.957},
        "candor_turn_taking": {"tor": 0.941, "latency": 0.265},
        "synthetic_user_interruption": {"tor": 1.000, "judge": 0.765, "latency": 0.257},
    },
}
MODE_OF_PUBLISHED = "fdb-compat"
