"""Claims: the findings of the paper (and of the wider literature), checked on a sweep.

    from smoothbench.claims import CLAIMS, evaluate_paths, text_table, to_html
    verdicts = evaluate_paths(["multirun/reproduce-cpu"])   # every scale's, never pooled
    print(text_table(verdicts))
    page_fragment = to_html(verdicts, figure_links={"fig4": "#fig4"})

    from smoothbench.claims import agreement_table, evaluate_by_scale, load_paths
    by_scale = evaluate_by_scale(load_paths(["multirun/reproduce-cpu", "multirun/paper"]))
    print(agreement_table(by_scale))                       # cpu beside paper, per claim

`registry` holds the table of claims (each placed on its figure by `smoothbench.paper`),
`notes` reads what smoothbench measured about them (`notes.yaml`), `statistics` turns runs
into verdicts, `render` draws them (text, HTML, docs/claims.md) and `cli` is
`smoothbench-claims`. docs/claims.md lists every claim.
"""

from smoothbench.claims.registry import (
    CLAIMS,
    CLAIMS_BY_ID,
    SCALES,
    Claim,
    Precondition,
    Statistic,
    metric_patterns,
    presets_read,
)
from smoothbench.claims.render import (
    CLAIMS_CSS,
    agreement_html,
    agreement_rows,
    agreement_table,
    claims_markdown,
    entries_by_scale,
    json_payload,
    read_agreement,
    read_json,
    text_table,
    to_html,
    write_json,
)
from smoothbench.claims.statistics import (
    VERDICTS,
    RunData,
    Verdict,
    evaluate,
    evaluate_by_scale,
    evaluate_claim,
    evaluate_paths,
    load_paths,
    load_wandb,
    run_data,
    run_statistic,
    runs_by_scale,
    t_interval,
)

__all__ = [
    "CLAIMS",
    "CLAIMS_BY_ID",
    "CLAIMS_CSS",
    "SCALES",
    "VERDICTS",
    "Claim",
    "Precondition",
    "RunData",
    "Statistic",
    "Verdict",
    "agreement_html",
    "agreement_rows",
    "agreement_table",
    "claims_markdown",
    "entries_by_scale",
    "evaluate",
    "evaluate_by_scale",
    "evaluate_claim",
    "evaluate_paths",
    "json_payload",
    "load_paths",
    "load_wandb",
    "metric_patterns",
    "presets_read",
    "read_agreement",
    "read_json",
    "run_data",
    "run_statistic",
    "runs_by_scale",
    "t_interval",
    "text_table",
    "to_html",
    "write_json",
]
