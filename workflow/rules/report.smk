# Reports: the paper's tables II-V, Fig. 3, and results/metrics.json. The tables and claims also come as HTML
# (their Markdown with the paper's numbers), which the Snakemake report shows inline. Each report reads only the runs it shows,
# so changing one student reruns that student and the reports that use it.


rule report_table:
    input:
        table_inputs,
    output:
        csv=layout.table("{table}", "csv"),
        markdown=layout.table("{table}", "md"),
        html=report(layout.table("{table}", "html"), caption="../report/tables.rst", category="Tables"),
    wildcard_constraints:
        table="table[2-5]",
    params:
        inputs=lambda wildcards: as_ordered_json(
            report_inputs(report_section(wildcards.table), TABLE_ROLES[wildcards.table])
        ),
    log:
        "logs/report/{table}.log",
    benchmark:
        f"{layout.BENCHMARKS}/report_table_{{table}}.tsv"
    resources:
        **LIGHT_RESOURCES,
    conda:
        ENV
    shell:
        "(python -m dsflexinet report-table {wildcards.table} --inputs {params.inputs:q}"
        " --out-csv {output.csv:q} --out-md {output.markdown:q}"
        " && python -m dsflexinet report-html {output.markdown:q} --title {wildcards.table} --out {output.html:q})"
        " > {log:q} 2>&1"


rule report_confusion:
    input:
        lambda wildcards: [layout.student(SUBSET, REPORTS["fig3"][wildcards.name], seed).evaluation("float")
                           for seed in SEEDS],
    output:
        report(layout.figure("fig3_confusion_{name}"), caption="../report/fig3.rst", category="Figures"),
    params:
        title=lambda wildcards: f"Residual Normalization over {wildcards.name} (run {REPORTS['fig3'][wildcards.name]})",
        evaluations=lambda wildcards, input: " ".join(f"--eval {shlex.quote(path)}" for path in input),
    log:
        "logs/report/fig3_{name}.log",
    benchmark:
        f"{layout.BENCHMARKS}/report_confusion_{{name}}.tsv"
    resources:
        **LIGHT_RESOURCES,
    conda:
        ENV
    shell:
        "python -m dsflexinet report-confusion {params.evaluations} --title {params.title:q} --out {output:q}"
        " > {log:q} 2>&1"


rule report_metrics:
    input:
        runs=lambda wildcards: input_paths(report_inputs({run: run for run in STUDENTS}, test_curves(METRICS_ROLES))),
        fusion=layout.ensemble(SUBSET).report,
        energy=layout.energy(SUBSET).stats,
    output:
        metrics=layout.METRICS,
        curves=layout.VALIDATION_CURVES,
        devices=layout.DEVICE_ACCURACY,
    params:
        inputs=as_ordered_json(report_inputs({run: run for run in STUDENTS}, METRICS_ROLES)),
    log:
        "logs/report/metrics.log",
    benchmark:
        f"{layout.BENCHMARKS}/report_metrics.tsv"
    resources:
        **LIGHT_RESOURCES,
    conda:
        ENV
    shell:
        "python -m dsflexinet report-metrics --inputs {params.inputs:q} --fusion {input.fusion:q}"
        " --energy {input.energy:q} --out {output.metrics:q} --out-curves {output.curves:q}"
        " --out-devices {output.devices:q} > {log:q} 2>&1"


rule report_claims:
    input:
        plan_inputs(CLAIMS_PLAN),
    output:
        csv=layout.table("claims", "csv"),
        markdown=layout.table("claims", "md"),
        html=report(layout.table("claims", "html"), caption="../report/claims.rst", category="Claims"),
        figure=report(layout.figure("claims"), caption="../report/claims_figure.rst", category="Claims"),
    params:
        plan=as_json(CLAIMS_PLAN),
    log:
        "logs/report/claims.log",
    benchmark:
        f"{layout.BENCHMARKS}/report_claims.tsv"
    resources:
        **LIGHT_RESOURCES,
    conda:
        ENV
    shell:
        "(python -m dsflexinet report-claims --plan {params.plan:q} --out-csv {output.csv:q}"
        " --out-md {output.markdown:q} --out-png {output.figure:q}"
        " && python -m dsflexinet report-html {output.markdown:q} --title claims --out {output.html:q})"
        " > {log:q} 2>&1"


rule report_development:
    input:
        histories=list(development_histories().values()),
        fusion=layout.ensemble(SUBSET).report,
        holdout=layout.splits(SUBSET).fusion_holdout,
        ensemble=layout.ensemble_holdout_clips(SUBSET, "fused"),
        students=[layout.student(SUBSET, run, SEEDS[0]).holdout()[1] for run in FLOAT_TRAINED],
        defaults=[side["clips"] for setting in DEFAULTS_PLAN.values()
                  for side in (setting["baseline"], *setting["candidates"].values())],
    output:
        layout.DEVELOPMENT,
    params:
        histories=as_ordered_json(development_histories()),
        comparison=labels_only_comparison,
        defaults=lambda wildcards: flag("defaults", as_ordered_json(DEFAULTS_PLAN)) if DEFAULTS_PLAN else "",
    log:
        "logs/report/development.log",
    benchmark:
        f"{layout.BENCHMARKS}/report_development.tsv"
    resources:
        **LIGHT_RESOURCES,
    conda:
        ENV
    shell:
        "python -m dsflexinet report-development --histories {params.histories:q} --fusion {input.fusion:q}"
        " --holdout-clips {input.holdout:q} {params.comparison} {params.defaults} --out {output:q} > {log:q} 2>&1"


rule report_power:
    input:
        [path for comparison in power_comparisons().values() for side in comparison.values() for path in side.values()],
    output:
        markdown=layout.DEVELOPMENT_POWER,
        csv=layout.DEVELOPMENT_POWER_TABLE,
    params:
        comparisons=as_ordered_json(power_comparisons()),
    log:
        "logs/report/power.log",
    benchmark:
        f"{layout.BENCHMARKS}/report_power.tsv"
    resources:
        **LIGHT_RESOURCES,
    conda:
        ENV
    shell:
        "python -m dsflexinet power --comparisons {params.comparisons:q} --target 3"
        " --out-csv {output.csv:q} --out-md {output.markdown:q} > {log:q} 2>&1"
