"""Claims: the findings of the paper (and of the wider literature), checked on a sweep.

    from smoothbench.claims import CLAIMS, evaluate_paths, text_table, to_html
    verdicts = evaluate_paths(["multirun/reproduce-cpu"])
    print(text_table(verdicts))
    page_fragment = to_html(verdicts, figure_links={"fig4": "#fig4"})

`registry` holds the table of claims, `statistics` turns runs into verdicts, `render` draws
them (text, HTML, docs/claims.md) and `cli` is `smoothbench-claims`. docs/claims.md lists
every claim.
"""

from smoothbench.claims.registry import (
    CLAIMS,
    CLAIMS_BY_ID,
    Claim,
    Precondition,
    Statistic,
    metric_patterns,
    presets_read,
)
from smoothbench.claims.render import (
    CLAIMS_CSS,
    claims_markdown,
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
    evaluate_claim,
    evaluate_paths,
    load_paths,
    load_wandb,
    run_data,
    run_statistic,
    t_interval,
)

__all__ = [
    "CLAIMS",
    "CLAIMS_BY_ID",
    "CLAIMS_CSS",
    "VERDICTS",
    "Claim",
    "Precondition",
    "RunData",
    "Statistic",
    "Verdict",
    "claims_markdown",
    "evaluate",
    "evaluate_claim",
    "evaluate_paths",
    "load_paths",
    "load_wandb",
    "metric_patterns",
    "presets_read",
    "read_json",
    "run_data",
    "run_statistic",
    "t_interval",
    "text_table",
    "to_html",
    "write_json",
]
