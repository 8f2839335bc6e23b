# Energy-distribution analysis (paper Fig. 2): E(x) of every training clip; its mean is ADIR's threshold.


rule energy_analysis:
    input:
        CACHE["train"],
    output:
        stats="results/energy/energy.json",
        figure=report(
            "results/figures/fig2_energy_histogram.png",
            caption="../report/fig2.rst",
            category="Figures",
        ),
    params:
        threshold=config["energy"]["threshold"],
    log:
        "logs/analysis/energy_analysis.log",
    benchmark:
        "results/benchmarks/energy_analysis.tsv"
    resources:
        mem_mb=LIGHT_RESOURCES["mem_mb"],
        runtime=LIGHT_RESOURCES["runtime"],
    conda:
        ENV
    shell:
        "python -m dsflexinet energy --cache {input:q} --threshold {params.threshold}"
        " --out-json {output.stats:q} --out-png {output.figure:q} > {log:q} 2>&1"
