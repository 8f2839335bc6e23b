# Reports: the paper's tables II-V, Fig. 3, and results/metrics.json. Each table reads only the runs it shows,
# so changing one student reruns that student and the reports that use it.


rule report_table:
    input:
        table_inputs,
    output:
        csv=report("results/tables/{table}.csv", caption="../report/tables.rst", category="Tables"),
        markdown="results/tables/{table}.md",
    wildcard_constraints:
        table="table[2-5]",
    params:
        runs=lambda wildcards: labelled_flags(report_runs(wildcards.table)),
    log:
        "logs/report/{table}.log",
    benchmark:
        "results/benchmarks/report_table_{table}.tsv"
    resources:
        **LIGHT_RESOURCES,
    conda:
        ENV
    shell:
        "python -m dsflexinet report-table {wildcards.table} {params.runs}"
        " --out-csv {output.csv:q} --out-md {output.markdown:q} > {log:q} 2>&1"


rule report_confusion:
    input:
        lambda wildcards: f"results/students/{REPORTS['fig3'][wildcards.name]}/eval_float.json",
    output:
        report(
            "results/figures/fig3_confusion_{name}.png",
            caption="../report/fig3.rst",
            category="Figures",
        ),
    params:
        title=lambda wildcards: f"Residual Normalization over {wildcards.name} (run {REPORTS['fig3'][wildcards.name]})",
    log:
        "logs/report/fig3_{name}.log",
    benchmark:
        "results/benchmarks/report_confusion_{name}.tsv"
    resources:
        **LIGHT_RESOURCES,
    conda:
        ENV
    shell:
        "python -m dsflexinet report-confusion --eval {input:q} --title {params.title:q} --out {output:q}"
        " > {log:q} 2>&1"


rule report_metrics:
    input:
        runs=expand(
            "results/students/{run}/{name}",
            run=STUDENTS,
            name=("eval_float.json", "eval_int8.json", "complexity.json", "history.csv"),
        ),
        fusion="results/ensemble/fusion.json",
        energy="results/energy/energy.json",
    output:
        metrics="results/metrics.json",
        curves="results/plots/val_accuracy.csv",
        devices="results/plots/device_accuracy.csv",
    params:
        runs=labelled_flags({run: f"results/students/{run}" for run in STUDENTS}),
    log:
        "logs/report/metrics.log",
    benchmark:
        "results/benchmarks/report_metrics.tsv"
    resources:
        **LIGHT_RESOURCES,
    conda:
        ENV
    shell:
        "python -m dsflexinet report-metrics {params.runs} --fusion {input.fusion:q} --energy {input.energy:q}"
        " --out {output.metrics:q} > {log:q} 2>&1"
