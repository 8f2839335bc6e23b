# Energy-distribution analysis (paper Fig. 2): E(x) of every training clip of the subset; its mean is ADIR's
# threshold.


rule energy_analysis:
    input:
        cache=CACHE["train"],
        clips=layout.splits().train,
    output:
        stats=ENERGY.stats,
        figure=report(ENERGY.figure, caption="../report/fig2.rst", category="Figures"),
    params:
        threshold=flag("threshold", fixed_energy_threshold(config)),
    log:
        "logs/{subset}/analysis/energy_analysis.log",
    benchmark:
        f"{layout.BENCHMARKS}/{{subset}}/energy_analysis.tsv"
    priority: PRIORITY["data"]
    resources:
        **LIGHT_RESOURCES,
    conda:
        ENV
    shell:
        "python -m dsflexinet energy --cache {input.cache:q} --clips {input.clips:q} {params.threshold}"
        " --out-json {output.stats:q} --out-png {output.figure:q} > {log:q} 2>&1"
